"""Small models' training quiet and beside other work: the library's thread choice
(``ppmodels.infer.threads``: one thread while ``fit`` trains a small model) against torch's
own threads (``PPMODELS_THREADS=omp``), in paired rounds in one process.

Workloads: compare's full-rank guide on ``sblrc-blr`` (its SVI steps' seconds, as the report
gives them; the Laplace start is not in them) and the small program of ``svi_step.py`` (``fit``,
``--steps`` steps). ``--load torch-2-threads`` runs ``busy_machine.py``'s second Pyro training
(torch's default threads) beside the rounds; ``quiet`` runs nothing beside them.

    python benchmarks/threads.py --load quiet --rounds 5
    python benchmarks/threads.py --load torch-2-threads --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import warnings

import pyro
import torch
from _paired import rotations
from busy_machine import LOADS
from fit_overhead import regression_data
from svi_step import fit_run

from ppmodels import posteriordb
from ppmodels.infer import compare

SETTINGS = {"library's choice": None, "torch's threads": "omp"}


def guide_seconds(problem, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = compare(problem, guides=("fullrank",), mcmc=(), seed=seed, progress=False)
    return result.method("fullrank").seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load", default="quiet", choices=["quiet", "torch-2-threads"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    if os.environ.get("PPMODELS_THREADS") or os.environ.get("OMP_NUM_THREADS"):
        raise SystemExit("unset PPMODELS_THREADS and OMP_NUM_THREADS: this benchmark sets them per round")
    problem = posteriordb.load("sblrc-blr")
    x, y = regression_data()
    work = {
        "compare full-rank guide (s)": lambda s: guide_seconds(problem, s),
        f"fit, small program, {args.steps} steps (s)": lambda s: _timed(lambda: fit_run(x, y, args.steps, s)),
    }
    for f in work.values():  # warm-up: imports, caches
        f(0)
    load = None
    if LOADS[args.load] is not None:
        load = subprocess.Popen([sys.executable, "-c", LOADS[args.load]])
        time.sleep(5)
    try:
        times = {(w, s): [] for w in work for s in SETTINGS}
        for r, order in rotations(list(SETTINGS), args.rounds):
            for setting in order:
                _set(SETTINGS[setting])
                for w, f in work.items():
                    times[(w, setting)].append(f(r + 1))
        _set(None)
    finally:
        if load is not None:
            load.kill()
    print(f"load: {args.load}; {args.rounds} rounds; torch {torch.__version__}, pyro {pyro.__version__}")
    print("| workload | setting | seconds, median (min-max) |")
    print("|---|---|---|")
    for (w, s), values in times.items():
        print(f"| {w} | {s} | {statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f}) |")


def _timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def _set(value):
    if value is None:
        os.environ.pop("PPMODELS_THREADS", None)
    else:
        os.environ["PPMODELS_THREADS"] = value


if __name__ == "__main__":
    main()
