"""HMC's integration time, fixed (Pyro's default, 2 pi) against jittered (this library's default).

On the conjugate regression of ``tests/test_mcmc.py`` (a Gaussian posterior in closed form),
per seed: the smallest effective sample size over the coefficients, each coefficient's
posterior sd over the exact one, and the leapfrog steps of both chains, for this library's HMC
with ``jitter=0`` (Pyro's fixed time) and with its default ``jitter=1``, and for Pyro's own HMC.

    python benchmarks/hmc_jitter.py --seeds 1,2,3    # about a minute
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from test_mcmc import _data, _exact, regression  # noqa: E402

from ppmodels.infer import mcmc  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    X, y = _data()
    _, sd = _exact(X, y)
    runs = {
        "fixed (jitter=0)": dict(jitter=0),
        "jittered (default)": {},
        "Pyro's HMC": dict(engine="pyro", compile=None),
    }
    print("| seed | HMC | min ESS | sd / exact sd | leapfrog steps |")
    print("|---|---|---|---|---|")
    for seed in (int(s) for s in args.seeds.split(",")):
        for name, options in runs.items():
            options = {"compile": "graph", **options}
            result = mcmc(regression, X, y, kernel="hmc", num_samples=args.samples, warmup_steps=args.warmup,
                          num_chains=2, seed=seed, **options)  # fmt: skip
            draws = result.get_samples()["beta"].double()
            ratio = ", ".join(f"{r:.2f}" for r in (draws.std(0) / sd).tolist())
            steps = sum(int(s.sum()) for s in result.stats["leapfrogs"]) if result.stats else "-"
            print(f"| {seed} | {name} | {result.min_ess():.0f} | {ratio} | {steps} |", flush=True)
    print(f"\n2 chains of {args.warmup} warm-up + {args.samples} draws; torch {torch.__version__}")


if __name__ == "__main__":
    main()
