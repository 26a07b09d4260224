"""The command quiet and beside other work (issue 21): ``ppmodels demo`` timed alone, beside a
busy Python loop, and beside a second torch process training a Pyro model with torch's
default threads, under several thread settings, in paired rounds.

Each round runs every (setting, load) once, in a rotating order; each timing is divided by the
same setting's quiet time in that round, so the machine's slow drift cancels. A setting is an
environment for the demo's process (torch reads OpenMP's variables when it loads), e.g.
``default`` (what the command sets itself), ``omp-default`` (the command's own choice turned
off: OpenMP's defaults, as before issue 21), ``threads-1``, ``passive``.

    python benchmarks/busy_machine.py                       # 3 rounds, ~15 minutes
    python benchmarks/busy_machine.py --rounds 5 --epochs 20 --settings default,omp-default
    python benchmarks/busy_machine.py --workload bnn --epochs 2 --loads quiet --settings default,omp-default
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

#: the demo's process environment for each setting (on top of this process's environment)
SETTINGS = {
    "default": {},
    "omp-default": {"PPMODELS_THREADS": "omp"},  # OpenMP's own defaults (before issue 21)
    "threads-1": {"PPMODELS_THREADS": "omp", "OMP_NUM_THREADS": "1"},
    "passive": {"PPMODELS_THREADS": "omp", "OMP_WAIT_POLICY": "PASSIVE"},
    "spin-10k": {"PPMODELS_THREADS": "omp", "GOMP_SPINCOUNT": "10000"},
}

_BUSY_LOOP = "while True: pass"

#: a second user's Pyro training, torch's default threads (two here), until killed
_TORCH_LOAD = """
import pyro, pyro.distributions as dist, torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
x = torch.randn(2000, 50)
w_true = torch.randn(50)
y = x @ w_true + torch.randn(2000)
net = torch.nn.Sequential(torch.nn.Linear(50, 256), torch.nn.Tanh(), torch.nn.Linear(256, 1))
def model(x, y):
    pyro.module("net", net)
    s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
    with pyro.plate("data", len(x)):
        pyro.sample("y", dist.Normal(net(x).squeeze(-1), s), obs=y)
guide = AutoNormal(model)
svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
while True:
    svi.step(x, y)
"""

LOADS = {"quiet": None, "busy-loop": _BUSY_LOOP, "torch-2-threads": _TORCH_LOAD}


#: the command timed: the demo, or another training command at its defaults
WORKLOADS = {
    "demo": ["demo"],
    "vae": ["train", "vae"],
    "bnn": ["train", "bnn"],
    "np": ["train", "np", "--eval-functions", "50"],
}


def run_demo(setting, epochs, out, workload="demo"):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "PPMODELS_THREADS")}
    env.update(SETTINGS[setting])
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ppmodels", *WORKLOADS[workload], "--epochs", str(epochs)]
        + ["--no-progress", "--out", out],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--settings", default="default,omp-default,threads-1,passive")
    parser.add_argument("--loads", default=",".join(LOADS))
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="demo", help="the command timed")
    args = parser.parse_args(argv)
    settings = args.settings.split(",")
    loads = args.loads.split(",")
    times = {(s, load): [] for s in settings for load in loads}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for li, load in enumerate(loads[r % len(loads) :] + loads[: r % len(loads)]):
                background = None
                if LOADS[load] is not None:
                    background = subprocess.Popen([sys.executable, "-c", LOADS[load]])
                    time.sleep(3.0)  # let it start its work
                try:
                    k = (r + li) % len(settings)
                    for s in settings[k:] + settings[:k]:
                        seconds = run_demo(s, args.epochs, os.path.join(tmp, f"{s}-{load}-{r}"), args.workload)
                        times[(s, load)].append(seconds)
                        print(f"round {r}: {s:12s} {load:16s} {seconds:6.1f} s", flush=True)
                finally:
                    if background is not None:
                        background.kill()
                        background.wait()
    command = " ".join(WORKLOADS[args.workload])
    print(f"\n`ppmodels {command} --epochs {args.epochs}`, wall s (median of {args.rounds} rounds) and the ratio")
    print("to the same setting's quiet time in the same round (median [min, max]); last column: the setting's")
    print("quiet time over the `omp-default` quiet time (median [min, max]).\n")
    print("| setting | " + " | ".join(loads) + " | quiet cost |")
    print("|---" * (len(loads) + 2) + "|")
    for s in settings:
        cells = []
        for load in loads:
            seconds = statistics.median(times[(s, load)])
            if load == "quiet" or "quiet" not in loads:
                cells.append(f"{seconds:.1f} s")
                continue
            ratios = [a / b for a, b in zip(times[(s, load)], times[(s, "quiet")])]
            cells.append(f"{seconds:.1f} s, {statistics.median(ratios):.2f}x [{min(ratios):.2f}, {max(ratios):.2f}]")
        cost = "-"
        if "quiet" in loads and "omp-default" in settings:
            ratios = [a / b for a, b in zip(times[(s, "quiet")], times[("omp-default", "quiet")])]
            cost = f"{statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}]"
        print(f"| {s} | " + " | ".join(cells) + f" | {cost} |")


if __name__ == "__main__":
    main()
