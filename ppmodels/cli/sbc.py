"""``ppmodels sbc``: simulation-based calibration of one inference method on a small problem."""

from __future__ import annotations

import argparse
import os

from ._options import Formatter, Options, integer, nonnegative_int, positive_int, problem_name
from ._run import CommandError, RunDir, progress_mode


def add_parser(sub, explicit):
    p = sub.add_parser(
        "sbc",
        help="simulation-based calibration: does an inference method return the posterior?",
        description="Draw parameters from the prior and data from the model, infer with --method, and check that "
        "the true parameters' ranks among the posterior draws are uniform (Talts et al. 2018); VSBC's symmetry test "
        "for VI (Yao et al. 2018). Writes sbc.md, sbc.json and sbc.png; each simulation is saved as it finishes "
        "(simulations.jsonl), so running the command again with the same --out continues.",
        formatter_class=Formatter,
    )
    o = Options(p, explicit)
    o.add(
        "--problem",
        type=problem_name,
        default="linreg",
        help="linreg, logreg, mlp1d, gmm, or posteriordb:NAME (one posterior whose priors are proper)",
    )
    o.add("--posteriordb", metavar="PATH", help="read posteriordb problems from this local clone of posteriordb")
    o.add("--method", default="meanfield", help="meanfield, fullrank, lowrank, nuts, hmc or chees")
    o.add("--simulations", type=positive_int, default=100, help="simulated data sets")
    o.add("--draws", type=positive_int, default=99, help="posterior draws each rank is among")
    o.add(
        "--workers",
        type=positive_int,
        default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
        help="processes running simulations in parallel (default: the cores this process may use)",
    )
    o.add("--num-samples", type=positive_int, default=1000, help="MCMC samples per simulation")
    o.add("--warmup", type=nonnegative_int, default=500, help="MCMC warm-up steps per simulation")
    o.add("--vi-epochs", type=positive_int, default=3000, help="the most SVI steps per simulation")
    o.add("--vi-samples", type=positive_int, default=2000, help="draws from the trained guide per simulation")
    o.add("--seed", type=integer, default=0, help="simulation j uses seed + j")
    o.add("--out", help="output folder (default: runs/sbc-PROBLEM-METHOD)")
    o.add("--progress", action=argparse.BooleanOptionalAction, help="a progress bar (default: on a terminal)")
    p.set_defaults(run=run_sbc)


def run_sbc(args, explicit):
    from .. import infer, plots, posteriordb
    from ..infer import sbc
    from .compare import problems

    if args.method not in (*infer.GUIDES, *infer.KERNELS):
        raise CommandError(f"--method {args.method!r}: choose from {', '.join((*infer.GUIDES, *infer.KERNELS))}")
    if args.problem.startswith("posteriordb:"):
        names = args.problem.partition(":")[2].split(",")
        if len(names) != 1 or names[0] == "all":
            raise CommandError(f"--problem {args.problem}: sbc takes one posteriordb posterior")
        model = posteriordb.load(names[0], path=args.posteriordb)
        train = model.args
    else:
        problem_fn, data_fn = problems()[args.problem]
        model = problem_fn()
        train, _ = data_fn(args.seed)
    label = args.problem.replace("posteriordb:", "")
    run = RunDir("sbc", args, explicit, f"runs/sbc-{label}-{args.method}")
    print(
        f"SBC of {args.method} on {args.problem}: {args.simulations} simulations on {args.workers} "
        f"process{'es' if args.workers > 1 else ''}",
        flush=True,
    )
    result = sbc(
        model,
        tuple(train),
        args.method,
        num_simulations=args.simulations,
        num_draws=args.draws,
        seed=args.seed,
        out=run.path / "simulations",
        workers=args.workers,
        progress=progress_mode(args.progress) is True,
        num_samples=args.num_samples,
        warmup_steps=args.warmup,
        vi_epochs=args.vi_epochs,
        num_vi_samples=args.vi_samples,
    )
    run.write_text("sbc.md", result.to_markdown())
    run.write_json("sbc.json", result.to_dict())
    run.figure(plots.sbc_ranks(result), "sbc.png")
    print(result.to_markdown())
    print(f"wrote sbc.md, sbc.json and sbc.png to {run.path.resolve()}")
    return run.path
