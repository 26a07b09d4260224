"""What ``fit``'s engine costs around Pyro's step, and whether a change to the engine made it
slower: ``fit`` against a hand-written PyTorch loop doing the same arithmetic, optionally
beside ``fit`` from another checkout of ppmodels in the same process.

Workloads:
- ``vae``: the seed VAE (``dpn.VAE``'s core pair, 1,437 digits at 32x32, batch 128), eager;
- ``vae-graph``: the same with ``fit(compile="graph")``;
- ``regression``: a user's Pyro program as Pyro's tutorials write it — a model function
  (``w ~ N(0, I)``, ``y ~ N(Xw, 1)`` over 200 rows, 5 features) and a ``pyro.param`` guide,
  the whole data set at every step: the step is small, so the engine's per-step Python
  work shows (the hand loop computes the same single-particle ELBO estimate, no Pyro).

Each round runs every method once, the order rotating; ratios are taken within the round
(median and interquartile range over rounds; higher is faster). ``--against DIR`` adds
``fit`` from the checkout at DIR (e.g. a ``git worktree`` of the commit before a change),
imported under another name, and reports this checkout's throughput over it.

    python benchmarks/fit_overhead.py --rounds 12
    git worktree add /tmp/before HEAD~1
    python benchmarks/fit_overhead.py --rounds 12 --against /tmp/before
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
import vae_throughput
from _paired import paired, rotations
from pyro.distributions import constraints

import ppmodels
import ppmodels.infer
from ppmodels.data import load

HAND = "hand-written loop"


# -- the regression: a user's program --------------------------------------------------------
def regression_data(seed=0, n=200, d=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.linspace(-1, 1, d) + torch.randn(n, generator=g)
    return x, y


def model(x, y):
    w = pyro.sample("w", dist.Normal(torch.zeros(x.shape[1]), 1.0).to_event(1))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)


def guide(x, y):
    loc = pyro.param("w_loc", torch.zeros(x.shape[1]))
    scale = pyro.param("w_scale", torch.ones(x.shape[1]), constraint=constraints.positive)
    pyro.sample("w", dist.Normal(loc, scale).to_event(1))


def regression_hand(x, y, steps, seed):
    torch.manual_seed(seed)
    loc = torch.zeros(x.shape[1], requires_grad=True)
    raw_scale = torch.zeros(x.shape[1], requires_grad=True)  # log of the scale, as Pyro's positive constraint
    opt = torch.optim.Adam([loc, raw_scale], lr=1e-2)
    prior = torch.distributions.Normal(0.0, 1.0, validate_args=False)
    for _ in range(steps):
        scale = raw_scale.exp()
        w = loc + scale * torch.randn_like(loc)
        log_lik = torch.distributions.Normal(x @ w, 1.0, validate_args=False).log_prob(y).sum()
        log_q = torch.distributions.Normal(loc, scale, validate_args=False).log_prob(w).sum()
        loss = -(log_lik + prior.log_prob(w).sum() - log_q)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return float(loss.detach())


def regression_fit(package, x, y, steps, seed):
    pyro.clear_param_store()
    return package.infer.fit(
        model=model, guide=guide, data=(x, y), epochs=steps, lr=1e-2, seed=seed, progress=False
    ).train_loss[-1]


# -- the seed VAE ------------------------------------------------------------------------------
def vae_fit(package, x, epochs, seed, compile=None):
    vae = vae_throughput.build(seed)
    package.infer.fit(
        vae.core(),
        vae_throughput.batches(x, seed),
        epochs=epochs,
        optimizer=torch.optim.Adam(vae.parameters(), lr=1e-3),
        seed=seed,
        progress=False,
        compile=compile,
    )


def vae_hand(x, epochs, seed):
    vae_throughput.train_hand(vae_throughput.build(seed), x, epochs, seed)


def workloads(args):
    x = load("digits", image_size=32).train_x
    xr, yr = regression_data()
    work = {
        "vae": (
            x.shape[0] * args.epochs,
            lambda p, s: vae_fit(p, x, args.epochs, s),
            lambda s: vae_hand(x, args.epochs, s),
        ),
        "vae-graph": (
            x.shape[0] * args.epochs,
            lambda p, s: vae_fit(p, x, args.epochs, s, compile="graph"),
            lambda s: vae_hand(x, args.epochs, s),
        ),
        "regression": (
            args.steps,
            lambda p, s: regression_fit(p, xr, yr, args.steps, s),
            lambda s: regression_hand(xr, yr, args.steps, s),
        ),
    }
    return {name: work[name] for name in args.workloads.split(",")}


def import_against(path):
    """ppmodels from the checkout at ``path``, imported as ``ppmodels_against`` (its modules
    import each other relatively, so a renamed copy is a second, independent package)."""
    source = Path(path) / "ppmodels"
    if not (source / "__init__.py").is_file():
        raise SystemExit(f"--against {path}: no ppmodels package there")
    folder = Path(tempfile.mkdtemp())
    shutil.copytree(source, folder / "ppmodels_against")
    sys.path.insert(0, str(folder))
    importlib.import_module("ppmodels_against.infer")
    return sys.modules["ppmodels_against"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="vae,vae-graph,regression")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=3, help="VAE epochs per timed run")
    parser.add_argument("--steps", type=int, default=400, help="regression steps per timed run")
    parser.add_argument("--against", help="another checkout whose fit to time beside this one's")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "fit_overhead.json"))
    args = parser.parse_args()
    packages = {"fit": ppmodels}
    if args.against:
        packages["fit (--against)"] = import_against(args.against)
    report = {"machine": platform.platform(), "torch": torch.__version__, "pyro": pyro.__version__, "workloads": {}}
    for name, (size, run_fit, run_hand) in workloads(args).items():
        methods = {HAND: run_hand, **{k: (lambda s, p=p, f=run_fit: f(p, s)) for k, p in packages.items()}}
        for method in methods.values():  # warm-up: imports, first traces, caches
            method(0)
        rates = {m: [] for m in methods}
        for r, order in rotations(methods, args.rounds):
            for m in order:
                t = time.perf_counter()
                methods[m](r + 1)
                rates[m].append(size / (time.perf_counter() - t))
        rows = {}
        for m in methods:
            median, q1, q3 = paired(rates, m, HAND)
            rows[m] = {"per_second": sorted(rates[m])[len(rates[m]) // 2], "ratio": [median, q1, q3]}
        if args.against:
            rows["this / --against"] = list(paired(rates, "fit", "fit (--against)"))
        report["workloads"][name] = rows
        print(f"\n{name} ({args.rounds} rounds)")
        for m, row in rows.items():
            if m == "this / --against":
                print(f"  this checkout / --against: {row[0]:.3f} [{row[1]:.3f}, {row[2]:.3f}]")
            else:
                median, q1, q3 = row["ratio"]
                print(f"  {m:<22} {row['per_second']:>10.0f}/s  ratio to hand {median:.3f} [{q1:.3f}, {q3:.3f}]")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
