"""A user's small Pyro program trained by SVI: steps per second of each way to run it.

The program is ``fit_overhead.py``'s regression, as Pyro's tutorials write one: a model
function (``w ~ N(0, I)``, ``y ~ N(Xw, 1)`` over 200 rows, 5 features), a ``pyro.param``
mean-field guide, Adam with learning rate 0.01, the whole data set at every step. Methods:

- ``hand loop``: the same single-particle ELBO estimate in plain PyTorch (the reference);
- ``pyro SVI``: Pyro's own loop, ``SVI(model, guide, pyro.optim.Adam, Trace_ELBO()).step``;
- ``fit``: ``ppmodels.infer.fit`` with its defaults; ``fit graph`` / ``fit inductor``: with
  ``compile="graph"`` / ``compile="inductor"`` (inductor's on-disk cache is warm after the
  warm-up run, so the rounds time the cached case);
- ``numpyro``: the same program in NumPyro, its ``jax.jit(svi.update)`` called in a Python
  loop as its users write it (only when ``jax`` and ``numpyro`` import: the ``bench`` extra).

Each round runs every method once for ``--steps`` steps, the order rotating; ratios to the hand
loop are taken within the round (median and interquartile range over rounds). ``--threads N``
sets torch's threads first (the default keeps torch's own); ``--methods`` runs a subset.

    python benchmarks/svi_step.py --rounds 10 --steps 2000
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import pyro
import torch
from _paired import paired, rotations
from fit_overhead import guide, model, regression_data, regression_hand

from ppmodels.infer import fit

HAND = "hand loop"


def pyro_svi(x, y, steps, seed):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), pyro.infer.Trace_ELBO())
    for _ in range(steps):
        loss = svi.step(x, y)
    return loss


def fit_run(x, y, steps, seed, compile=None):
    pyro.clear_param_store()
    result = fit(
        model=model, guide=guide, data=(x, y), epochs=steps, lr=1e-2, seed=seed, progress=False, compile=compile
    )
    return result.train_loss[-1]


def numpyro_method(x, y):
    """A callable ``(steps, seed) -> loss`` running NumPyro's jitted update, or None."""
    try:
        import jax
        import numpyro
        import numpyro.distributions as nd
        from numpyro.infer import SVI, Trace_ELBO
        from numpyro.optim import Adam
    except ImportError:
        return None
    import jax.numpy as jnp

    def np_model(x, y):
        w = numpyro.sample("w", nd.Normal(jnp.zeros(x.shape[1]), 1.0).to_event(1))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", nd.Normal(x @ w, 1.0), obs=y)

    def np_guide(x, y):
        loc = numpyro.param("w_loc", jnp.zeros(x.shape[1]))
        scale = numpyro.param("w_scale", jnp.ones(x.shape[1]), constraint=nd.constraints.positive)
        numpyro.sample("w", nd.Normal(loc, scale).to_event(1))

    xj, yj = jnp.asarray(x.numpy()), jnp.asarray(y.numpy())
    svi = SVI(np_model, np_guide, Adam(1e-2), Trace_ELBO())
    update = jax.jit(svi.update)

    def run(steps, seed):
        state = svi.init(jax.random.PRNGKey(seed), xj, yj)
        for _ in range(steps):
            state, loss = update(state, xj, yj)
        return float(loss)

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads(N) first")
    parser.add_argument("--methods", help="comma-separated subset of the methods (the hand loop always runs)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "svi_step.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y = regression_data()
    methods = {
        HAND: lambda s: regression_hand(x, y, args.steps, s),
        "pyro SVI": lambda s: pyro_svi(x, y, args.steps, s),
        "fit": lambda s: fit_run(x, y, args.steps, s),
        "fit graph": lambda s: fit_run(x, y, args.steps, s, compile="graph"),
        "fit inductor": lambda s: fit_run(x, y, args.steps, s, compile="inductor"),
    }
    np_run = numpyro_method(x, y)
    if np_run is not None:
        methods["numpyro"] = lambda s: np_run(args.steps, s)
    if args.methods:
        wanted = {HAND, *(m.strip() for m in args.methods.split(","))}
        unknown = sorted(wanted - set(methods))
        if unknown:
            raise SystemExit(f"--methods: unknown {unknown}; choose from {sorted(methods)}")
        methods = {m: f for m, f in methods.items() if m in wanted}
    first = {}
    for name, method in methods.items():  # warm-up: imports, traces, compiles (timed: the cold cost)
        t = time.perf_counter()
        method(0)
        first[name] = time.perf_counter() - t
    rates = {m: [] for m in methods}
    for r, order in rotations(methods, args.rounds):
        for m in order:
            t = time.perf_counter()
            methods[m](r + 1)
            rates[m].append(args.steps / (time.perf_counter() - t))
    report = {
        "machine": platform.platform(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "rounds": args.rounds,
        "methods": {},
    }
    print(f"{args.steps} steps, {args.rounds} rounds, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"  {'method':<14} {'steps/s':>9}  {'ratio to hand [IQR]':<24} first run (s)")
    for m in methods:
        median, q1, q3 = paired(rates, m, HAND)
        per_second = sorted(rates[m])[len(rates[m]) // 2]
        report["methods"][m] = {"per_second": per_second, "ratio": [median, q1, q3], "first_run_s": first[m]}
        print(f"  {m:<14} {per_second:>9.0f}  {median:.3f} [{q1:.3f}, {q3:.3f}]      {first[m]:.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
