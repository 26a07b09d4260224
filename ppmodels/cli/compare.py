"""``ppmodels compare`` (VI against MCMC on a small problem) and ``ppmodels compare-elbo``
(estimators on one VAE)."""

from __future__ import annotations

import argparse

from ._options import (
    MODEL_ESTIMATORS,
    Formatter,
    Options,
    add_image_options,
    integer,
    names,
    nonnegative_int,
    positive_int,
    posteriordb_names,
    problem_name,
)
from ._run import CommandError, RunDir, progress_mode, resolve_device

ELBO_DEFAULTS = ("trace", "meanfield", "tracegraph", "iwae", "renyi")
PROBLEM_HELP = (
    "linreg (exact posterior known), logreg, mlp1d (a Bayesian MLP on 1-D data), gmm (a two-component "
    "mixture whose exact posterior over assignments is computed by brute force), posteriordb:NAME (a posteriordb "
    "posterior ported to Pyro, scored against its published reference), posteriordb:NAME,NAME,... or "
    "posteriordb:all (a benchmark: a table and a figure over the posteriors; rerunning with the same --out "
    "keeps the posteriors already done)"
)


def add_parsers(sub, explicit):
    ce = sub.add_parser(
        "compare-elbo",
        help="train one VAE with several ELBO estimators and compare them",
        description="Train copies of one VAE (same start, seed and budget) with several ELBO estimators and write "
        "elbo_comparison.md, elbo_comparison.json and elbo_comparison.png. Each estimator's training is "
        "checkpointed; --resume RUN_DIR continues an interrupted comparison.",
        formatter_class=Formatter,
    )
    o = Options(ce, explicit)
    add_image_options(o, latent=8, epochs=20, estimators=(), out="runs/compare-elbo-DATA")
    o.add(
        "--estimators",
        type=names,
        default=ELBO_DEFAULTS,
        help=f"comma-separated estimator names, of {', '.join(MODEL_ESTIMATORS)}",
    )
    if not explicit:
        ce.set_defaults(eval_samples=1000, out=None)
    ce.set_defaults(run=run_compare_elbo)

    cmp = sub.add_parser(
        "compare",
        help="check variational inference against MCMC on a small problem",
        description="Fit a small Bayesian model with variational guides and with NUTS/HMC on the same data; "
        "write comparison.md, comparison.json and figures. VI runs are seconds long and an MCMC chain cannot be "
        "checkpointed mid-way, so compare has no --resume.",
        formatter_class=Formatter,
    )
    o = Options(cmp, explicit)
    o.add("--problem", type=problem_name, default="linreg", help=PROBLEM_HELP)
    o.add("--posteriordb", metavar="PATH", help="read posteriordb problems from this local clone of posteriordb")
    o.add(
        "--guides",
        type=names,
        default=("meanfield", "fullrank"),
        help="comma-separated guides: meanfield, fullrank, lowrank (none: MCMC only)",
    )
    o.add(
        "--mcmc",
        type=names,
        default=("nuts",),
        help="comma-separated kernels: nuts, hmc, chees; pyro-nuts, pyro-hmc (Pyro's own MCMC); none: VI only",
    )
    o.add("--num-samples", type=positive_int, default=1000, help="MCMC samples")
    o.add("--warmup", type=nonnegative_int, default=500, help="MCMC warm-up steps")
    o.add(
        "--chains",
        type=positive_int,
        default=None,
        help="MCMC chains, run in parallel processes (default: one per core, 2 to 4)",
    )
    o.add("--vi-epochs", type=positive_int, default=3000, help="the most SVI steps per guide")
    o.add(
        "--vi-stop",
        choices=["converged", "steps"],
        default="converged",
        help="stop each guide when its gradients are stationary at the smallest learning rate (default), or after "
        "exactly --vi-epochs steps",
    )
    o.add(
        "--vi-start",
        choices=["laplace", "prior"],
        default="laplace",
        help="where meanfield and fullrank start: the Laplace approximation, whitened (default), or Pyro's "
        "initialisation",
    )
    o.add("--seed", type=integer, default=0, help="seed of the data, VI and MCMC")
    o.add("--out", help="output folder (default: runs/compare-PROBLEM)")
    o.add(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="progress bars (default: on a terminal)",
    )
    cmp.set_defaults(run=run_compare)


def run_compare_elbo(args, explicit):
    import torch

    from .. import infer, plots
    from .images import build, data_name, load_data

    run = RunDir("compare-elbo", args, explicit, f"runs/compare-elbo-{data_name(args)}")
    unknown = [e for e in args.estimators if e not in MODEL_ESTIMATORS]
    if unknown or not args.estimators:
        raise CommandError(
            f"--estimators: {unknown or 'none given'}; this command's VAE takes {', '.join(MODEL_ESTIMATORS)}"
        )
    data = load_data(args)
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    pair = build("vae", args, data)
    print(
        f"comparing {', '.join(args.estimators)} on a VAE ({args.arch}, latent {args.latent_dim}) on {data.name}, "
        f"{args.epochs} epochs each",
        flush=True,
    )
    result = infer.compare_elbos(
        pair,
        data.train_x,
        data.test_x,
        args.estimators,
        epochs=args.epochs,
        batch_size=args.batch_size,
        num_particles=args.num_particles,
        vectorize_particles=args.vectorize_particles,
        lr=args.lr,
        eval_samples=args.eval_samples,
        seed=args.seed,
        progress=progress_mode(args.progress),
        device=device,
        checkpoint_dir=run.path / "estimators",
    )
    run.write_text("elbo_comparison.md", result.to_markdown())
    run.write_text("elbo_comparison.json", result.to_json())
    run.figure(plots.estimator_comparison(result, title=f"ELBO estimators: VAE on {data.name}"), "elbo_comparison.png")
    print(result.to_markdown())
    print(f"wrote elbo_comparison.md, elbo_comparison.json and elbo_comparison.png to {run.path.resolve()}")
    return run.path


def problems():
    from .. import data as datasets
    from .. import models

    return {
        "linreg": (lambda: models.BayesianLinearRegression(2), lambda seed: datasets.linear_regression_data(seed=seed)),
        "logreg": (
            lambda: models.BayesianLogisticRegression(3),
            lambda seed: datasets.logistic_regression_data(seed=seed),
        ),
        "mlp1d": (lambda: models.BayesianMLPRegression(10), lambda seed: datasets.sine_regression_data(seed=seed)),
        "gmm": (lambda: models.GaussianMixture(), lambda seed: datasets.mixture_data(seed=seed)),
    }


def run_compare(args, explicit):
    if args.problem.startswith("posteriordb:"):
        return run_posteriordb(args, explicit)
    return run_small_problem(args, explicit)


def _compare_options(args) -> dict:
    """compare's keywords from the command's options."""
    return {
        "guides": args.guides,
        "mcmc": args.mcmc,
        "num_samples": args.num_samples,
        "warmup_steps": args.warmup,
        "num_chains": args.chains,
        "vi_epochs": args.vi_epochs,
        "vi_start": args.vi_start,
        "vi_stop": args.vi_stop,
        "seed": args.seed,
        "progress": progress_mode(args.progress) is True,
    }


def _settings(args) -> dict:
    keys = ("guides", "mcmc", "num_samples", "warmup", "chains", "vi_epochs", "vi_start", "vi_stop", "seed")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items() if k in keys}


def run_posteriordb(args, explicit):
    """One posteriordb posterior, or several as a benchmark: each posterior's comparison in
    its own folder as it finishes (reused when the command is run again with the same
    settings), then the table and the figure over all of them."""
    import json

    from .. import infer, plots, posteriordb
    from ._run import write_text_atomic

    listed = args.problem.partition(":")[2]
    wanted = posteriordb_names(args.problem)
    run = RunDir("compare", args, explicit, f"runs/compare-posteriordb-{listed if len(wanted) == 1 else 'benchmark'}")
    settings, results = _settings(args), {}
    for name in wanted:
        folder = run.path / name if len(wanted) > 1 else run.path
        saved = folder / "comparison.json"
        if len(wanted) > 1 and saved.is_file():
            try:
                previous = json.loads(saved.read_text())
            except ValueError:
                previous = {}
            if previous.get("settings") == settings:
                print(f"{name}: done before, kept", flush=True)
                results[name] = previous
                continue
        try:
            problem = posteriordb.load(name, path=args.posteriordb)
        except ValueError as error:
            raise CommandError(str(error)) from None
        print(
            f"{name}: comparing {', '.join(args.guides) or 'no guides'} against {', '.join(args.mcmc) or 'no MCMC'}",
            flush=True,
        )
        result = infer.compare(problem, **_compare_options(args))
        folder.mkdir(parents=True, exist_ok=True)
        report = {**result.to_dict(), "settings": settings}
        write_text_atomic(folder / "comparison.md", result.to_markdown())
        run.figure(
            plots.marginals(result, title=f"posterior marginals: {name}"),
            str((folder / "marginals.png").relative_to(run.path)),
        )
        write_text_atomic(saved, json.dumps(report, indent=2))  # last: its presence means the posterior is done
        results[name] = report
        for warning in result.warnings:
            print(f"warning: {name}: {warning}")
    if len(wanted) == 1:
        print((run.path / "comparison.md").read_text().split("\n\n")[0])
        print(f"wrote comparison.md, comparison.json and figures to {run.path.resolve()}")
        return run.path
    shapes = {name: posteriordb.load(name, path=args.posteriordb).reference_shape() for name in results}
    table = posteriordb_table(results, shapes)
    run.write_text("benchmark.md", table)
    run.write_json(
        "benchmark.json",
        {
            "settings": settings,
            "posteriors": {n: r["summary"] for n, r in results.items()},
            "reference_shapes": shapes,
        },
    )
    run.figure(plots.posteriordb_benchmark(results), "benchmark.png")
    print(table)
    print(f"wrote benchmark.md, benchmark.json, benchmark.png and a folder per posterior to {run.path.resolve()}")
    return run.path


def posteriordb_table(results, shapes) -> str:
    """Methods x posteriors: whether the reference is near-Gaussian in the unconstrained space
    (:meth:`~ppmodels.posteriordb.PosteriorProblem.reference_shape`), the largest |mean
    error| and W1 in reference sds, the sd ratios' range, PSIS's k-hat (VI), the SVI steps and
    the wall time."""
    lines = [
        "| posterior | near-Gaussian | method | max abs mean error (ref sds) | sd ratio min-max | max W1 (ref sds) "
        "| k-hat | steps | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, report in results.items():
        shape = shapes[name]
        near = "yes" if shape["near_gaussian"] else f"no ({shape['worst']['parameter']})"
        for row in report["summary"]:
            steps = row.get("steps")
            lines.append(
                f"| {name} | {near} | {row['method']} | {row['max_abs_mean_error_sds']:.3g} | "
                f"{row['min_sd_ratio']:.3g}-{row['max_sd_ratio']:.3g} | {row['max_w1_sds']:.3g} | "
                f"{'-' if row.get('k_hat') is None else format(row['k_hat'], '.2f')} | "
                f"{'-' if steps is None else steps} | {row['seconds']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def run_small_problem(args, explicit):
    import torch

    from .. import infer, plots
    from ..infer.comparison.problem import mean_functions

    problem_fn, data_fn = problems()[args.problem]
    problem = problem_fn()
    train, test = data_fn(args.seed)
    run = RunDir("compare", args, explicit, f"runs/compare-{args.problem}")
    print(
        f"comparing {', '.join(args.guides) or 'no guides'} against {', '.join(args.mcmc) or 'no MCMC'} "
        f"on {args.problem} ({len(train[0])} training points)",
        flush=True,
    )
    options = _compare_options(args)
    result = infer.compare(
        problem, train, test, **options, kernel_options={"max_tree_depth": 6} if args.problem == "mlp1d" else None
    )
    run.write_text("comparison.md", result.to_markdown())
    run.write_text("comparison.json", result.to_json())
    run.figure(plots.marginals(result, title=f"posterior marginals: {args.problem}"), "marginals.png")
    if result.discrete:
        run.figure(plots.discrete_marginals(result, title=f"assignments: {args.problem}"), "assignments.png")
    if args.problem == "mlp1d":
        grid = torch.linspace(-1.3, 1.3, 200).unsqueeze(-1)
        means = {m.name: mean_functions(problem.model, m.site_samples, (grid,)) for m in result.methods}
        run.figure(plots.predictive_bands(grid, means, *train), "predictive.png")
    print(result.to_markdown().split("\n\n")[0])
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(f"wrote comparison.md, comparison.json and figures to {run.path.resolve()}")
    return run.path
