"""The ``ppmodels`` command: ``demo``, ``train vae|cvae|bnn|np``, ``sample``, ``compare``, ``compare-elbo``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from . import data as datasets
from . import infer, models, nn, plots
from .infer import ELBO_NAMES
from .models import LIKELIHOODS

NP_FAMILIES = {
    "gp-rbf": lambda **kw: datasets.gp_functions("rbf", **kw),
    "gp-matern": lambda **kw: datasets.gp_functions("matern", **kw),
    "gp-periodic": lambda **kw: datasets.gp_functions("periodic", **kw),
    "sine": lambda **kw: datasets.sine_functions(**kw),
}
DATA_HELP = "digits (embedded, the default), mnist:DIR or fashion-mnist:DIR (folder of IDX files)"


def _positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {text}")
    return value


def _dims(text):
    try:
        dims = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated ints such as 400 or 512,256, got {text!r}") from None
    if not dims or min(dims) <= 0:
        raise argparse.ArgumentTypeError(f"must be comma-separated positive ints, got {text!r}")
    return dims


def _add_run_options(p, epochs, batch_size, lr, out, epochs_help="epochs", batch_help=None, elbo_option=True):
    """Options every training subcommand has: estimator, budget, optimiser, seed, device,
    output folder and progress bar."""
    if elbo_option:
        p.add_argument("--elbo", choices=ELBO_NAMES, default="trace", help="ELBO estimator (default trace)")
    p.add_argument("--epochs", type=_positive_int, default=epochs, help=f"{epochs_help} (default {epochs})")
    p.add_argument("--batch-size", type=_positive_int, default=batch_size, help=batch_help)
    p.add_argument("--lr", type=float, default=lr, help=f"Adam learning rate (default {lr:g})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--out", default=None, help=f"output folder (default {out})")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: only on a terminal)",
    )


def _add_train_options(p, latent_default, epochs_default, elbo_option=True):
    p.add_argument("--data", default="digits", help=DATA_HELP)
    p.add_argument("--download", action="store_true", help="download MNIST/Fashion-MNIST into the cache if missing")
    p.add_argument(
        "--image-size",
        type=_positive_int,
        default=None,
        help="resize images to this square size (digits: 8, 28 or 32; default 28 for digits)",
    )
    p.add_argument("--arch", choices=["mlp", "conv"], default="mlp", help="encoder/decoder architecture")
    p.add_argument("--hidden", type=_dims, default=(400,), help="MLP hidden widths, e.g. 512,256 (default 400)")
    p.add_argument(
        "--latent-dim",
        type=_positive_int,
        default=latent_default,
        help=f"latent dimension (default {latent_default}; 2 adds the latent scatter and walk figures)",
    )
    p.add_argument("--likelihood", choices=LIKELIHOODS, default="bernoulli", help="p(x|z) (default bernoulli)")
    p.add_argument("--num-particles", type=_positive_int, default=None, help="particles per step for the estimator")
    p.add_argument(
        "--vectorize-particles",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw the particles in one vectorised pass (default: the estimator's own default)",
    )
    p.add_argument(
        "--eval-samples",
        type=_positive_int,
        default=500,
        help="importance samples K for the test log-likelihood (default 500)",
    )
    _add_run_options(p, epochs_default, 128, 1e-3, "runs/MODEL-DATA", elbo_option=elbo_option)


def build_parser():
    parser = argparse.ArgumentParser(prog="ppmodels", description="Deep generative models as Pyro model/guide pairs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="train a 2-D latent VAE on the embedded digits and write metrics and figures",
        description="Train a VAE with a 2-D latent space on scikit-learn's digits (about a minute "
        "on 2 cores) and write metrics.json, the checkpoint and PNG figures.",
    )
    demo.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    demo.add_argument("--epochs", type=_positive_int, default=150, help="epochs (default 150)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)

    train = sub.add_parser(
        "train",
        help="train a model and write metrics, checkpoint and figures",
        description="Train a model/guide pair and write metrics.json, model.pt and PNG figures.",
    )
    models = train.add_subparsers(dest="model", required=True, metavar="MODEL")
    vae = models.add_parser("vae", help="variational auto-encoder", description="Train a VAE.")
    _add_train_options(vae, latent_default=8, epochs_default=30)
    cvae = models.add_parser(
        "cvae",
        help="conditional VAE (labels condition encoder, decoder and prior)",
        description="Train a conditional VAE.",
    )
    _add_train_options(cvae, latent_default=8, epochs_default=30)
    cvae.add_argument("--prior", choices=["learned", "standard"], default="learned", help="p(z|y) (default learned)")

    bnn = models.add_parser(
        "bnn",
        help="Bayesian LeNet-5 classifier with uncertainty and calibration",
        description="Train a Bayesian LeNet-5 (every weight random, N(0, 1) prior, mean-field Normal posterior, "
        "the full ELBO) and write metrics.json (accuracy, NLL, ECE, Brier, epistemic uncertainty on test vs "
        "out-of-distribution inputs), model.pt and figures.",
    )
    bnn.add_argument("--data", default="digits", help=DATA_HELP)
    bnn.add_argument("--download", action="store_true", help="download MNIST/Fashion-MNIST into the cache if missing")
    bnn.add_argument(
        "--convert",
        action="store_true",
        help="train a deterministic LeNet-5 first, then convert it (posterior means start at its weights)",
    )
    bnn.add_argument("--pretrain-epochs", type=_positive_int, default=5, help="deterministic epochs for --convert")
    bnn.add_argument("--lr-decay", type=float, default=0.9, help="learning-rate factor per epoch (default 0.9)")
    bnn.add_argument("--init-scale", type=float, default=1e-2, help="initial posterior sd (default 0.01)")
    bnn.add_argument("--eval-samples", type=_positive_int, default=100, help="posterior draws for predictions")
    _add_run_options(bnn, 20, 64, 3e-3, "runs/bnn-DATA")

    npr = models.add_parser(
        "np",
        help="neural process on GP or sine function families, checked against the exact GP",
        description="Train a latent neural process (Pyro model/guide pair) on random functions and write "
        "metrics.json (per-target log-likelihood, its gap to the exact GP predictive with the true "
        "hyperparameters, 90%% interval coverage inside and outside the context range), model.pt and figures.",
    )
    npr.add_argument("--data", choices=sorted(NP_FAMILIES), default="gp-rbf", help="function family (default gp-rbf)")
    npr.add_argument("--functions", type=_positive_int, default=8000, help="training functions (default 8000)")
    npr.add_argument("--points", type=_positive_int, default=50, help="points per function (default 50)")
    npr.add_argument("--min-context", type=_positive_int, default=3)
    npr.add_argument("--max-context", type=_positive_int, default=45)
    npr.add_argument("--attention", action="store_true", help="attentive deterministic path (ANP)")
    npr.add_argument("--hidden", type=_positive_int, default=64, help="hidden width (default 64)")
    npr.add_argument("--latent-dim", type=_positive_int, default=32)
    npr.add_argument("--eval-context", type=_positive_int, default=10, help="context points when evaluating")
    npr.add_argument("--eval-functions", type=_positive_int, default=500, help="held-out functions (default 500)")
    npr.add_argument("--eval-samples", type=_positive_int, default=200, help="draws of z when evaluating")
    _add_run_options(
        npr,
        40,
        16,
        1e-3,
        "runs/np-DATA",
        epochs_help="passes over fresh training functions",
        batch_help="functions per step",
    )

    compare_elbo = sub.add_parser(
        "compare-elbo",
        help="train one VAE with several ELBO estimators and compare them",
        description="Train copies of one VAE (same start, seed and budget) with several ELBO estimators and write "
        "elbo_comparison.md, elbo_comparison.json and elbo_comparison.png.",
    )
    _add_train_options(compare_elbo, latent_default=8, epochs_default=20, elbo_option=False)
    compare_elbo.add_argument(
        "--estimators",
        type=_names_list,
        default=("trace", "meanfield", "tracegraph", "iwae", "renyi"),
        help="comma-separated estimator names (default trace,meanfield,tracegraph,iwae,renyi)",
    )
    compare_elbo.set_defaults(eval_samples=1000)

    compare = sub.add_parser(
        "compare",
        help="check variational inference against MCMC on a small problem",
        description="Fit a small Bayesian model with variational guides and with NUTS/HMC on the same data; "
        "write comparison.md, comparison.json and figures.",
    )
    compare.add_argument(
        "--problem",
        choices=sorted(PROBLEMS),
        default="linreg",
        help="linreg (exact posterior known), logreg, or mlp1d (a Bayesian MLP on 1-D data)",
    )
    compare.add_argument(
        "--guides",
        type=_names_list,
        default=("meanfield", "fullrank"),
        help="comma-separated guides: meanfield, fullrank, lowrank (default meanfield,fullrank)",
    )
    compare.add_argument("--mcmc", type=_names_list, default=("nuts",), help="comma-separated kernels: nuts, hmc")
    compare.add_argument("--num-samples", type=_positive_int, default=1000, help="MCMC samples (default 1000)")
    compare.add_argument("--warmup", type=_nonnegative_int, default=500, help="MCMC warm-up steps (default 500)")
    compare.add_argument("--vi-epochs", type=_positive_int, default=3000, help="SVI steps per guide (default 3000)")
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument("--out", default=None, help="output folder (default runs/compare-PROBLEM)")
    compare.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)

    sample = sub.add_parser(
        "sample",
        help="draw new samples from a saved run",
        description="Draw samples from the checkpoint in RUN_DIR and save them as a PNG grid.",
    )
    sample.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by 'ppmodels train' or 'ppmodels demo'")
    sample.add_argument("--num", type=_positive_int, default=64, help="number of samples (per label for a CVAE)")
    sample.add_argument("--labels", type=_dims_or_zero, default=None, help="CVAE labels, e.g. 0,3,7 (default all)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", default=None, help="PNG path (default RUN_DIR/samples-SEED.png)")
    return parser


def _names_list(text):
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    return names if text.strip().lower() != "none" else ()


def _nonnegative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative int, got {text}")
    return value


PROBLEMS = {
    "linreg": (lambda: models.BayesianLinearRegression(2), lambda seed: datasets.linear_regression_data(seed=seed)),
    "logreg": (lambda: models.BayesianLogisticRegression(3), lambda seed: datasets.logistic_regression_data(seed=seed)),
    "mlp1d": (lambda: models.BayesianMLPRegression(10), lambda seed: datasets.sine_regression_data(seed=seed)),
}


def run_compare_elbo(args) -> Path:
    device, data, out = _setup(args, "runs/compare-elbo-{data}")
    torch.manual_seed(args.seed)
    pair = _build("vae", args, data)
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
        progress=args.progress,
        device=device,
    )
    (out / "elbo_comparison.md").write_text(result.to_markdown())
    (out / "elbo_comparison.json").write_text(result.to_json())
    plots.save(
        plots.estimator_comparison(result, title=f"ELBO estimators: VAE on {data.name}"), out / "elbo_comparison.png"
    )
    print(result.to_markdown())
    print(f"wrote elbo_comparison.md, elbo_comparison.json and elbo_comparison.png to {out.resolve()}")
    return out


def run_compare(args) -> Path:
    from .infer.compare import mean_functions

    problem = PROBLEMS[args.problem][0]()
    train, test = PROBLEMS[args.problem][1](args.seed)
    out = Path(args.out or f"runs/compare-{args.problem}")
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"comparing {', '.join(args.guides) or 'no guides'} against {', '.join(args.mcmc) or 'no MCMC'} "
        f"on {args.problem} ({len(train[0])} training points)",
        flush=True,
    )
    result = infer.compare(
        problem,
        train,
        test,
        guides=args.guides,
        mcmc=args.mcmc,
        num_samples=args.num_samples,
        warmup_steps=args.warmup,
        vi_epochs=args.vi_epochs,
        seed=args.seed,
        progress=bool(args.progress),
        kernel_options={"max_tree_depth": 6} if args.problem == "mlp1d" else None,
    )
    (out / "comparison.md").write_text(result.to_markdown())
    (out / "comparison.json").write_text(result.to_json())
    plots.save(plots.marginals(result, title=f"posterior marginals: {args.problem}"), out / "marginals.png")
    if args.problem == "mlp1d":
        grid = torch.linspace(-1.3, 1.3, 200).unsqueeze(-1)
        means = {m.name: mean_functions(problem.model, m.site_samples, (grid,)) for m in result.methods}
        plots.save(plots.predictive_bands(grid, means, *train), out / "predictive.png")
    print(result.to_markdown().split("\n\n")[0])
    print(f"wrote comparison.md, comparison.json and figures to {out.resolve()}")
    return out


def _dims_or_zero(text):
    try:
        values = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated ints, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"must be comma-separated non-negative ints, got {text!r}")
    return values


def _build(model, args, data):
    shape, latent = data.image_shape, args.latent_dim
    cond = data.num_classes if model == "cvae" else 0
    if args.arch == "mlp":
        encoder = nn.MLPEncoder(shape, latent, hidden_dims=args.hidden, cond_dim=cond)
        decoder = nn.MLPDecoder(latent, shape, hidden_dims=tuple(reversed(args.hidden)), cond_dim=cond)
    else:
        encoder = nn.ConvEncoder(shape, latent, cond_dim=cond)
        decoder = nn.ConvDecoder(latent, shape, cond_dim=cond)
    kwargs = {"likelihood": args.likelihood}
    if args.likelihood == "normal":
        kwargs["scale"] = "learned"
    if model == "cvae":
        return models.CVAE(encoder, decoder, latent, data.num_classes, prior=args.prior, **kwargs)
    return models.VAE(encoder, decoder, latent, **kwargs)


def _fit(pair, train, test, args, device, **options):
    """``fit`` with the command's common options, across processes under torchrun. Returns
    ``(result, seconds)``, or ``(None, seconds)`` on processes other than rank 0."""
    distributed = _launched_by_torchrun()
    t0 = time.perf_counter()
    result = infer.fit(
        pair,
        train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        elbo=args.elbo,
        lr=args.lr,
        val_data=test,
        seed=args.seed,
        device=None if distributed else device,
        progress=args.progress,
        distributed=distributed,
        **options,
    )
    seconds = time.perf_counter() - t0
    return (None if distributed and _rank() != 0 else result), seconds


def _launched_by_torchrun() -> bool:
    """True when this process is one of several that torchrun started (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _setup(args, default_out):
    """The device, the data set and the output folder that a training command's options name."""
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    image_size = args.image_size or (28 if args.data == "digits" else None)
    data = datasets.load(args.data, image_size=image_size, download=args.download)
    out = Path(args.out or default_out.format(data=data.name))
    out.mkdir(parents=True, exist_ok=True)
    return device, data, out


def run_train(model, args) -> Path:
    device, data, out = _setup(args, f"runs/{model}-{{data}}")
    pair = _build(model, args, data)
    labelled = model == "cvae"
    train = (data.train_x, data.train_y) if labelled else (data.train_x,)
    test = (data.test_x, data.test_y) if labelled else (data.test_x,)
    print(
        f"training {model} ({args.arch}, latent {args.latent_dim}, {args.likelihood}) on {data.name} "
        f"{tuple(data.train_x.shape)} with {args.elbo} for {args.epochs} epochs",
        flush=True,
    )
    result, train_seconds = _fit(
        pair,
        train,
        test,
        args,
        device,
        num_particles=args.num_particles,
        vectorize_particles=args.vectorize_particles,
    )
    if result is None:  # another process than rank 0 under torchrun
        return out
    test_elbo = infer.elbo(pair, test, seed=args.seed, device=device)
    test_ll = infer.log_likelihood(pair, test, num_samples=args.eval_samples, seed=args.seed, device=device)
    metadata = {
        "command": "train",
        "model": model,
        "data": args.data,
        "image_size": data.image_shape[-1],
        "class_names": list(data.class_names),
    }
    infer.save(out / "model.pt", pair, metadata=metadata)
    metrics = {
        "model": model,
        "data": data.name,
        "arch": args.arch,
        "latent_dim": args.latent_dim,
        "likelihood": args.likelihood,
        "elbo": args.elbo,
        "epochs": args.epochs,
        "seed": args.seed,
        "num_train": int(data.train_x.shape[0]),
        "num_test": int(data.test_x.shape[0]),
        "num_parameters": sum(p.numel() for p in pair.parameters()),
        "train_loss": result.train_loss,
        "test_loss": result.val_loss,
        "epoch_seconds": result.epoch_seconds,
        "train_seconds": train_seconds,
        "samples_per_second": result.samples_per_second,
        "test_elbo": float(test_elbo.mean()),
        "test_log_likelihood": float(test_ll.mean()),
        "test_log_likelihood_stderr": float(test_ll.std() / len(test_ll) ** 0.5),
        "eval_samples": args.eval_samples,
        "units": "nats per sample (losses are negative ELBOs)",
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    _figures(pair, model, data, result, out, device, args.seed)
    print(
        f"test ELBO {metrics['test_elbo']:.2f}, test log-likelihood (K={args.eval_samples}) "
        f"{metrics['test_log_likelihood']:.2f} nats per sample"
    )
    print(f"wrote metrics.json, model.pt and figures to {out.resolve()}")
    return out


@torch.no_grad()
def _figures(pair, model, data, result, out, device, seed):

    plots.save(plots.loss_curves(result.train_loss, result.val_loss, title=f"{model} on {data.name}"), out / "loss.png")
    n = 16
    x = data.test_x[:n].to(device)
    y = data.test_y[:n].to(device)
    recon = pair.reconstruct(x, y) if model == "cvae" else pair.reconstruct(x)
    plots.save(
        plots.image_grid(torch.cat([x, recon]).cpu(), nrow=2, title="test images (top), reconstructions"),
        out / "reconstructions.png",
    )
    if model == "cvae":
        per = 10
        labels = torch.arange(data.num_classes).repeat_interleave(per)
        samples = pair.generate(labels.to(device), seed=seed).cpu()
        plots.save(
            plots.class_rows(
                samples.reshape(data.num_classes, per, *samples.shape[1:]), data.class_names, title="samples per class"
            ),
            out / "class_samples.png",
        )
        plots.save(plots.image_grid(samples, nrow=data.num_classes, title="samples"), out / "samples.png")
    else:
        plots.save(plots.image_grid(pair.generate(64, seed=seed).cpu(), nrow=8, title="samples"), out / "samples.png")
    if pair.latent_dim == 2:
        loc = torch.cat(
            [
                pair.encode(
                    data.test_x[i : i + 256].to(device),
                    data.test_y[i : i + 256].to(device) if model == "cvae" else None,
                )[0]
                for i in range(0, len(data.test_x), 256)
            ]
        )
        plots.save(plots.latent_scatter(loc.cpu(), data.test_y), out / "latent_scatter.png")
        if model == "vae":
            plots.save(plots.latent_walk(pair.decode, device=device), out / "latent_walk.png")


def _ood_inputs(x, seed):
    """Out-of-distribution inputs for a digit classifier: the test digits rotated by 90
    degrees, and uniform noise images with the test images' mean brightness."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(x.shape, generator=generator) * (2 * float(x.mean()))
    return {"rotated 90°": torch.rot90(x, 1, dims=(-2, -1)), "uniform noise": noise.clamp(0, 1)}


def run_train_bnn(args) -> Path:
    from . import toolbox

    if not 0 < args.lr_decay <= 1:
        raise ValueError(f"--lr-decay must be in (0, 1], but got {args.lr_decay}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    data = datasets.load(args.data, image_size=32 if args.data == "digits" else None, download=args.download)
    size = data.image_shape[-1]
    if data.image_shape[0] != 1 or size not in (28, 32) or data.image_shape[-2] != size:
        raise ValueError(f"LeNet-5 takes 1x28x28 or 1x32x32 images, but {data.name} has {data.image_shape}")
    out = Path(args.out or f"runs/bnn-{data.name}")
    out.mkdir(parents=True, exist_ok=True)
    mean, std = float(data.train_x.mean()), float(data.train_x.std())
    train, test = (data.train_x, data.train_y), (data.test_x, data.test_y)
    torch.manual_seed(args.seed)
    pretrain = None
    if args.convert:
        net = nn.LeNet5(data.num_classes, 1, size, mean, std).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        batches = infer.data.make_batches(
            train, args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(args.seed)
        )
        for _ in range(args.pretrain_epochs):
            for xb, yb in batches:
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(xb.to(device)), yb.to(device)).backward()
                opt.step()
        with torch.no_grad():
            probs = torch.cat(
                [net.eval()(data.test_x[i : i + 1000].to(device)).softmax(-1) for i in range(0, len(data.test_x), 1000)]
            )
        pretrain = {"epochs": args.pretrain_epochs, "test_accuracy": toolbox.accuracy(probs.cpu(), data.test_y)}
        pair = models.to_bayesian(net, init_scale=args.init_scale)
    else:
        pair = models.BayesianLeNet5(data.num_classes, 1, size, mean, std, init_scale=args.init_scale)
    print(
        f"training a Bayesian LeNet-5{' (converted)' if args.convert else ''} on {data.name} "
        f"{tuple(data.train_x.shape)} with {args.elbo} for {args.epochs} epochs",
        flush=True,
    )
    decay = args.lr_decay
    result, train_seconds = _fit(
        pair, train, test, args, device, scheduler=lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, decay)
    )
    if result is None:  # another process than rank 0 under torchrun
        return out

    def predict(x):
        return pair.predict(x.to(device), args.eval_samples, seed=args.seed, batch_size=500).samples.cpu()

    probs = predict(data.test_x)
    rel = toolbox.reliability(probs, data.test_y)
    epistemic = {"test digits": toolbox.classification_uncertainty(probs).epistemic}
    for name, x in _ood_inputs(data.test_x, args.seed).items():
        epistemic[name] = toolbox.classification_uncertainty(predict(x)).epistemic
    test_mi = epistemic["test digits"]
    auroc = {name: toolbox.roc(test_mi, v).auroc for name, v in epistemic.items() if name != "test digits"}
    infer.save(out / "model.pt", pair, metadata={"command": "train", "model": "bnn", "data": args.data})
    metrics = {
        "model": "bnn (converted LeNet-5)" if args.convert else "bnn (BayesianLeNet5)",
        "data": data.name,
        "elbo": args.elbo,
        "epochs": args.epochs,
        "seed": args.seed,
        "num_train": len(data.train_y),
        "num_test": len(data.test_y),
        "num_random_weights": pair.report.num_random,
        "pretrain": pretrain,
        "train_loss": result.train_loss,
        "test_loss": result.val_loss,
        "train_seconds": train_seconds,
        "samples_per_second": result.samples_per_second,
        "eval_samples": args.eval_samples,
        "test_accuracy": toolbox.accuracy(probs, data.test_y),
        "test_nll": toolbox.negative_log_likelihood(probs, data.test_y),
        "test_ece": rel.ece,
        "test_brier": toolbox.brier_score(probs, data.test_y),
        "mean_epistemic": {name: float(v.mean()) for name, v in epistemic.items()},
        "ood_auroc_by_epistemic": auroc,
        "units": "losses: negative ELBO in nats per training sample; NLL in nats per test sample; "
        "epistemic: mutual information in nats",
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plots.save(
        plots.loss_curves(result.train_loss, result.val_loss, title=f"Bayesian LeNet-5 on {data.name}"),
        out / "loss.png",
    )
    plots.save(plots.reliability_diagram(rel), out / "reliability.png")
    plots.save(
        plots.uncertainty_histogram(epistemic, title="test digits vs out-of-distribution inputs"),
        out / "epistemic_ood.png",
    )
    print(
        f"test accuracy {metrics['test_accuracy']:.4f}, NLL {metrics['test_nll']:.4f}, ECE {rel.ece:.4f}; "
        f"OOD AUROC by epistemic uncertainty: " + ", ".join(f"{k} {v:.3f}" for k, v in auroc.items())
    )
    print(f"wrote metrics.json, model.pt and figures to {out.resolve()}")
    return out


def run_train_np(args) -> Path:
    from . import toolbox

    if _launched_by_torchrun():
        raise ValueError("'ppmodels train np' runs in one process; launch it without torchrun")

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    family = NP_FAMILIES[args.data]
    train = family(num_functions=args.functions, num_points=args.points, seed=args.seed)
    test = family(num_functions=args.eval_functions, num_points=args.points, seed=args.seed + 10_000)
    batches = datasets.ContextTargetBatches(train, args.batch_size, args.min_context, args.max_context, seed=args.seed)
    out = Path(args.out or f"runs/np-{args.data}")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    pair = models.NeuralProcess(hidden=args.hidden, latent_dim=args.latent_dim, attention=args.attention)
    print(
        f"training {'an attentive' if args.attention else 'a'} neural process on {args.data} "
        f"({args.functions} functions x {args.points} points) with {args.elbo} for {args.epochs} epochs",
        flush=True,
    )
    probe = [t.to(device) for t in toolbox.split_context(test, args.eval_context, seed=args.seed)]
    pair.to(device)
    optimizer = torch.optim.Adam(pair.parameters(), lr=args.lr)  # kept across the one-epoch fit calls
    history = {
        "loss (negative ELBO, nats per function)": [],
        "KL(q(z|targets) || q(z|context))": [],
        "mean sd of q(z|context)": [],
    }
    t0 = time.perf_counter()
    for epoch in range(args.epochs):  # one epoch per call, to record the diagnostics in between
        result = infer.fit(
            pair,
            batches,
            epochs=1,
            elbo=args.elbo,
            optimizer=optimizer,
            seed=args.seed if epoch == 0 else None,
            device=device,
            progress=args.progress,
        )
        with torch.no_grad():
            prior, posterior = pair.latent(probe[0], probe[1]), pair.latent(probe[2], probe[3])
            history["KL(q(z|targets) || q(z|context))"].append(
                float(torch.distributions.kl_divergence(posterior, prior).mean())
            )
            history["mean sd of q(z|context)"].append(float(prior.base_dist.scale.mean()))
        history["loss (negative ELBO, nats per function)"].append(result.train_loss[-1])
    train_seconds = time.perf_counter() - t0
    evaluation = toolbox.evaluate_neural_process(
        pair, test, args.eval_context, args.eval_samples, seed=args.seed, device=device
    )
    infer.save(out / "model.pt", pair, metadata={"command": "train", "model": "np", "data": args.data})
    metrics = {
        "model": "attentive neural process" if args.attention else "neural process",
        "data": args.data,
        "epochs": args.epochs,
        "steps": args.epochs * len(batches),
        "seed": args.seed,
        "train_seconds": train_seconds,
        "history": history,
        "evaluation": evaluation.to_dict(),
        "units": "log-likelihoods in nats per target point; the targets are all points of a function",
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    _np_figures(pair, test, evaluation, history, out, device, args)
    e = evaluation
    oracle = f", GP oracle {e.oracle_log_likelihood:.3f} (gap {e.oracle_gap:.3f})" if e.oracle_gap is not None else ""
    print(
        f"test log-likelihood {e.log_likelihood:.3f} nats per target{oracle}; 90% coverage inside the context "
        f"range {e.coverage_inside:.3f}, outside {e.coverage_outside:.3f}"
    )
    print(f"wrote metrics.json, model.pt and figures to {out.resolve()}")
    return out


def _np_figures(pair, test, evaluation, history, out, device, args):
    from . import toolbox

    plots.save(plots.training_curves(history, title="neural process training"), out / "training.png")
    xc, yc, xt, yt = (t[:6].to(device) for t in toolbox.split_context(test, args.eval_context, seed=args.seed))
    pred = pair.predict(xc, yc, xt, 100, seed=args.seed)
    panels = []
    oracle = None
    if test.lengthscale is not None:
        mean, cov = test.gp_predictive(torch.arange(6), xc.cpu(), yc.cpu(), xt.cpu())
        oracle = (mean, cov.diagonal(dim1=-2, dim2=-1).sqrt())
    for i in range(6):
        panels.append(
            {
                "x_context": xc[i].cpu(),
                "y_context": yc[i].cpu(),
                "x": xt[i].cpu(),
                "mean": pred.mean[i].cpu(),
                "std": pred.std[i].cpu(),
                "truth": yt[i].cpu(),
                "samples": pred.mean_samples[:12, i, :, 0].cpu(),
                "oracle_mean": None if oracle is None else oracle[0][i],
                "oracle_std": None if oracle is None else oracle[1][i],
            }
        )
    plots.save(
        plots.function_predictions(panels, title=f"{args.data}, {args.eval_context} context points"),
        out / "predictions.png",
    )


def run_sample(args) -> Path:
    run_dir = Path(args.run_dir)
    path = run_dir / "model.pt"
    if not path.is_file():
        raise SystemExit(
            f"ppmodels sample: no checkpoint at {path}; RUN_DIR must be a folder written by "
            "'ppmodels train' or 'ppmodels demo'"
        )
    pair = infer.load(path)
    meta = infer.checkpoint.metadata(path)
    out = Path(args.out or run_dir / f"samples-{args.seed}.png")
    if hasattr(pair, "num_classes"):
        labels = args.labels if args.labels is not None else tuple(range(pair.num_classes))
        bad = [v for v in labels if v >= pair.num_classes]
        if bad:
            raise SystemExit(f"ppmodels sample: --labels {bad} outside [0, {pair.num_classes})")
        y = torch.tensor(labels).repeat_interleave(args.num)
        images = pair.generate(y, seed=args.seed)
        names = meta.get("class_names")
        plots.save(
            plots.class_rows(
                images.reshape(len(labels), args.num, *images.shape[1:]), [names[v] for v in labels] if names else None
            ),
            out,
        )
    else:
        if args.labels is not None:
            raise SystemExit("ppmodels sample: --labels applies to a CVAE run only")
        images = pair.generate(args.num, seed=args.seed)
        plots.save(plots.image_grid(images, title=f"{args.num} samples"), out)
    print(f"wrote {len(images)} samples to {out.resolve()}")
    return out


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        demo = argparse.Namespace(
            data="digits",
            download=False,
            image_size=28,
            arch="mlp",
            hidden=(400,),
            latent_dim=2,
            likelihood="bernoulli",
            elbo="trace",
            num_particles=None,
            vectorize_particles=None,
            epochs=args.epochs,
            batch_size=128,
            lr=1e-3,
            seed=args.seed,
            eval_samples=500,
            device=None,
            out=args.out,
            progress=args.progress,
        )
        run_train("vae", demo)
    elif args.command == "train":
        try:
            runners = {"bnn": run_train_bnn, "np": run_train_np}
            runners[args.model](args) if args.model in runners else run_train(args.model, args)
        except (ValueError, FileNotFoundError, OSError) as exc:
            print(f"ppmodels train: error: {exc}", file=sys.stderr)
            return 2
    elif args.command == "sample":
        run_sample(args)
    elif args.command == "compare-elbo":
        try:
            run_compare_elbo(args)
        except (ValueError, FileNotFoundError, OSError) as exc:
            print(f"ppmodels compare-elbo: error: {exc}", file=sys.stderr)
            return 2
    elif args.command == "compare":
        try:
            run_compare(args)
        except (ValueError, TypeError) as exc:
            print(f"ppmodels compare: error: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
