"""NUTS through ppmodels.infer.compare against Pyro's MCMC(NUTS(...)) called directly.

Same model (Bayesian linear regression, 2 correlated features, 100 points), same seed, same
sample and warm-up counts; rounds alternate the two. compare runs Pyro's own MCMC here, one
chain, eager (``kernel_options={"engine": "pyro", "compile": None}``, ``num_chains=1``), so
that the ratio measures compare's own work; its default MCMC (``ppmodels.infer.mcmc``: the
compiled potential, this library's kernel, chains in parallel) is measured against NumPyro by
``mcmc_ess.py``. The ratio is direct wall time divided by
compare's (1.0: compare adds nothing; it also computes diagnostics and the report).

    python benchmarks/compare_overhead.py        # ~2 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
import time

import pyro
from pyro.infer import MCMC, NUTS

from ppmodels.data import linear_regression_data
from ppmodels.infer import compare
from ppmodels.models import BayesianLinearRegression


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--num-samples", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    problem = BayesianLinearRegression(2)
    train, _ = linear_regression_data(num_train=100, correlation=0.95, seed=0)
    direct, through = [], []
    for r in range(args.rounds):
        pyro.set_rng_seed(r)
        t = time.perf_counter()
        MCMC(NUTS(problem.model), num_samples=args.num_samples, warmup_steps=args.warmup, disable_progbar=True).run(
            *train
        )
        direct.append(time.perf_counter() - t)
        t = time.perf_counter()
        compare(
            problem,
            train,
            guides=(),
            mcmc=("nuts",),
            num_samples=args.num_samples,
            warmup_steps=args.warmup,
            seed=r,
            num_chains=1,
            kernel_options={"engine": "pyro", "compile": None},
        ).summary()
        through.append(time.perf_counter() - t)
    ratios = sorted(d / c for d, c in zip(direct, through))
    print(f"\nNUTS, {args.num_samples} samples + {args.warmup} warm-up, {args.rounds} rounds\n")
    print("| path | wall s (median) |\n|---|---|")
    print(f"| MCMC(NUTS(model)) directly | {statistics.median(direct):.2f} |")
    print(f"| ppmodels.infer.compare | {statistics.median(through):.2f} |")
    print(
        f"\nratio direct / compare: median {statistics.median(ratios):.3f} (min {ratios[0]:.3f}, max {ratios[-1]:.3f})"
    )


if __name__ == "__main__":
    main()
