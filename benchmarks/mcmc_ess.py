"""MCMC speed that counts: effective draws per second, ppmodels against NumPyro (and Pyro).

Per posterior, in one process, rounds alternating the samplers, each round a new seed:

- ``ppmodels``: ``ppmodels.infer.mcmc`` with its defaults (the potential compiled by
  inductor, this library's NUTS, one chain per core in parallel processes) — what
  ``compare`` runs;
- ``numpyro-1``: NumPyro's NUTS as its users run it by default (one chain);
- ``numpyro-2``: NumPyro's NUTS with a chain per core (``chain_method="parallel"`` on as many
  host devices), the same use of the machine as ``ppmodels``;
- with ``--chees``: ``ppmodels-chees``, ``mcmc(kernel="chees")`` (``compare(mcmc=("chees",))``):
  ChEES-HMC, 64 chains in lockstep in one process, the potential batched over them, started
  from a short NUTS run (500 warm-up + 1,000 draws each: 64 times the draws; its ratio is to
  NumPyro's NUTS, a different algorithm, and its means must agree as the others' do);
- with ``--pyro``: Pyro's own NUTS, eager (compare's MCMC before this library's kernel) and
  with ``jit_compile=True``, one chain (slow: up to minutes per run; the enumerated HMM is
  left out of the eager run, at over a second per iteration).

All run 500 warm-up and 1,000 kept draws per chain from their own initialisation (uniform in
(-2, 2) in the unconstrained space). Wall time includes compiling. Before the rounds, each
sampler runs once, untimed, on a one-parameter model of its own: the process's first use of a
compiler (inductor's imports and its checks of the C++ compiler, about 7 s; jax's start) is
paid once per process or machine, not per model. The first round is then cold
for both (inductor's on-disk cache starts empty; jax compiles from scratch); later rounds are
warm for both (inductor's cache has the graph, jax reuses its in-process compilations), so
the table gives the first round and the median of the later ones apart. ESS is the
smallest over parameters, by Pyro's estimator on every sampler's draws alike. The answers
must agree: each sampler's means are compared with ``ppmodels``'s in Monte Carlo standard
errors (``max z``; above 4 is a disagreement).

    python benchmarks/mcmc_ess.py --rounds 3 --posteriors blr,eight_schools,ar_k,gp_regr,mixture,hmm_dhmm  # ~4 min
    python benchmarks/mcmc_ess.py --rounds 1 --posteriors hmm                                          # ~4 min
    python benchmarks/mcmc_ess.py --rounds 1 --pyro --posteriors blr,eight_schools
"""

from __future__ import annotations

import os
import tempfile

# inductor's on-disk cache starts empty, so that the first round compiles from scratch, as
# NumPyro's does; later rounds find it warm, as NumPyro finds jax's in-process cache
os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="mcmc_ess_inductor_")

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import torch  # noqa: E402
from pyro.infer import MCMC, NUTS, config_enumerate  # noqa: E402
from pyro.ops.stats import effective_sample_size  # noqa: E402

from ppmodels import posteriordb  # noqa: E402
from ppmodels.infer import mcmc  # noqa: E402
from ppmodels.infer.sampling import cores  # noqa: E402

WARMUP, SAMPLES = 500, 1000


# -- the enumerated models, written as Pyro users write them ---------------------------------------
@config_enumerate
def mixture(y):
    """A contaminated normal, each point's component enumerated (Pyro's GMM tutorial's
    assignments): a signal normal(loc, scale) or a fixed wide background normal(0, 10). The
    background is fixed, so the posterior has no label-switched copy (with two free
    components, a chain that starts in the swapped mode stays there and ESS is 1)."""
    weights = pyro.sample("weights", dist.Dirichlet(torch.ones(2)))
    loc = pyro.sample("loc", dist.Normal(0.0, 10.0))
    scale = pyro.sample("scale", dist.LogNormal(0.0, 2.0))
    with pyro.plate("data", len(y)):
        z = pyro.sample("z", dist.Categorical(weights))
        pyro.sample(
            "y",
            dist.Normal(
                torch.stack([loc, torch.zeros_like(loc)])[z], torch.stack([scale, torch.full_like(scale, 10.0)])[z]
            ),
            obs=y,
        )


@config_enumerate
def hmm(y, num_states):
    """A Gaussian HMM, the states enumerated step by step with ``pyro.markov`` (Pyro's hmm.py).
    The states' locations are ordered (the lowest, then positive gaps), so the posterior has one
    mode: with exchangeable locations it has a relabelled copy, in which 4 of 6 NumPyro chains
    landed (their means 700 Monte Carlo errors from ours), and the answers could not agree."""
    transition = pyro.sample(
        "transition", dist.Dirichlet(torch.ones(num_states) + 4 * torch.eye(num_states)).to_event(1)
    )
    low = pyro.sample("low", dist.Normal(0.0, 1.0))
    gaps = pyro.sample("gaps", dist.LogNormal(math.log(4.0), 0.5).expand([num_states - 1]).to_event(1))
    locs = torch.cat([low.unsqueeze(-1), low.unsqueeze(-1) + gaps.cumsum(-1)], -1)
    x = None
    for t in pyro.markov(range(len(y))):
        probs = torch.ones(num_states) / num_states if x is None else transition[x]
        x = pyro.sample(f"x_{t}", dist.Categorical(probs))
        pyro.sample(f"y_{t}", dist.Normal(locs[x], 1.0), obs=y[t])


def hmm_dhmm(y, num_states):
    """The same HMM written with Pyro's ``DiscreteHMM`` distribution, which sums the states out
    by a parallel scan (about log2(T) batched operations, not T steps unrolled): how a Pyro user
    who wants speed writes it. The first step's transition is uniform, so the first state is
    uniform, as in :func:`hmm`; the posterior is the same."""
    transition = pyro.sample(
        "transition", dist.Dirichlet(torch.ones(num_states) + 4 * torch.eye(num_states)).to_event(1)
    )
    low = pyro.sample("low", dist.Normal(0.0, 1.0))
    gaps = pyro.sample("gaps", dist.LogNormal(math.log(4.0), 0.5).expand([num_states - 1]).to_event(1))
    locs = torch.cat([low.unsqueeze(-1), low.unsqueeze(-1) + gaps.cumsum(-1)], -1)
    uniform = torch.full((1, num_states, num_states), -math.log(num_states))
    transition_logits = torch.cat([uniform, transition.log().expand(len(y) - 1, num_states, num_states)])
    initial_logits = torch.full((num_states,), -math.log(num_states))
    observations = dist.Normal(locs.unsqueeze(-2), 1.0)  # [time (broadcast), state]
    pyro.sample("y", dist.DiscreteHMM(initial_logits, transition_logits, observations), obs=y)


def _mixture_data():
    g = torch.Generator().manual_seed(1)
    return (torch.cat([torch.randn(170, generator=g) * 0.8 + 1.5, torch.randn(30, generator=g) * 10.0]),)


def _hmm_data(T=100):
    g = torch.Generator().manual_seed(2)
    states, ys, s = [], [], 0
    for _ in range(T):
        s = s if torch.rand((), generator=g) < 0.9 else 1 - s
        states.append(s)
        ys.append(4.0 * s + torch.randn((), generator=g))
    return torch.stack(ys), 2


def posteriors() -> dict:
    """name -> (Pyro model, its arguments, max_plate_nesting)."""
    out = {}
    for name, key in [
        ("blr", "sblrc-blr"),
        ("eight_schools", "eight_schools-eight_schools_noncentered"),
        ("ar_k", "arK-arK"),
        ("gp_regr", "gp_pois_regr-gp_regr"),
    ]:
        p = posteriordb.load(key)
        out[name] = (p.model, p.args, None)
    out["mixture"] = (mixture, _mixture_data(), 1)
    out["hmm"] = (hmm, _hmm_data(), 0)
    out["hmm_dhmm"] = (hmm_dhmm, _hmm_data(), 0)
    return out


# -- the samplers ------------------------------------------------------------------------------
def run_ppmodels(model, args, nesting, seed, kernel="nuts"):
    start = time.perf_counter()
    result = mcmc(model, *args, seed=seed, max_plate_nesting=nesting, kernel=kernel)
    seconds = time.perf_counter() - start
    return seconds, {k: v for k, v in result.samples.items()}, result.compile["seconds"]


def run_pyro(model, args, nesting, seed, jit):
    pyro.set_rng_seed(seed)
    kernel = NUTS(model, jit_compile=jit, ignore_jit_warnings=True, max_plate_nesting=nesting)
    sampler = MCMC(kernel, num_samples=SAMPLES, warmup_steps=WARMUP, disable_progbar=True)
    start = time.perf_counter()
    sampler.run(*args)
    return time.perf_counter() - start, sampler.get_samples(group_by_chain=True), None


def start_compilers(samplers):
    """Each sampler once on a one-parameter model, untimed (see the module's docstring)."""
    import jax

    def toy():
        pyro.sample("mu", dist.Normal(0.0, 1.0))

    mcmc(toy, num_samples=10, warmup_steps=10, num_chains=1, compile="inductor", progress=False)
    for s in samplers:
        if s.startswith("numpyro"):
            import numpyro
            import numpyro.distributions as nd
            from numpyro.infer import MCMC as NMCMC
            from numpyro.infer import NUTS as NNUTS

            def ntoy():
                numpyro.sample("mu", nd.Normal(0.0, 1.0))

            sampler = NMCMC(NNUTS(ntoy), num_warmup=10, num_samples=10, num_chains=int(s.split("-")[1]),
                            chain_method="parallel", progress_bar=False)  # fmt: skip
            sampler.run(jax.random.PRNGKey(0))


def run_numpyro(name, args, seed, chains):
    import jax
    from _numpyro_models import models
    from numpyro.infer import MCMC as NMCMC
    from numpyro.infer import NUTS as NNUTS

    np_args = tuple(a.numpy() if isinstance(a, torch.Tensor) else a for a in args)
    sampler = NMCMC(NNUTS(models()[name]), num_warmup=WARMUP, num_samples=SAMPLES, num_chains=chains,
                    chain_method="parallel", progress_bar=False)  # fmt: skip
    start = time.perf_counter()
    sampler.run(jax.random.PRNGKey(seed), *np_args)
    samples = sampler.get_samples(group_by_chain=True)
    jax.block_until_ready(samples)
    seconds = time.perf_counter() - start
    return seconds, {k: torch.as_tensor(np.asarray(v)) for k, v in samples.items()}, None


def min_ess(samples) -> float:
    return min(float(effective_sample_size(v.double(), 0, 1).min()) for v in samples.values())


def max_z(samples, reference) -> float:
    """The largest |mean difference| over parameters, in Monte Carlo standard errors of both."""
    worst = 0.0
    for k, ref in reference.items():
        if k not in samples:
            continue
        a, b = samples[k].double(), ref.double()
        se = lambda v: v.reshape(-1, *v.shape[2:]).std(0) / effective_sample_size(v, 0, 1).clamp(min=1).sqrt()  # noqa: E731
        z = (a.mean((0, 1)) - b.mean((0, 1))).abs() / (se(a) ** 2 + se(b) ** 2).sqrt()
        worst = max(worst, float(z.max()))
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--posteriors", default="blr,eight_schools,ar_k,gp_regr,mixture,hmm_dhmm,hmm")
    parser.add_argument("--pyro", action="store_true", help="also Pyro's NUTS, eager and jit_compile (slow)")
    parser.add_argument("--no-numpyro", action="store_true")
    parser.add_argument("--chees", action="store_true", help="also ChEES-HMC (64 chains in lockstep, one process)")
    args = parser.parse_args()
    n_cores = cores()
    if not args.no_numpyro:
        import numpyro

        numpyro.set_host_device_count(n_cores)  # before jax starts: one device per core
    warnings.simplefilter("ignore")
    table = posteriors()
    names = args.posteriors.split(",")
    samplers = ["ppmodels"] + ([] if args.no_numpyro else ["numpyro-1", f"numpyro-{n_cores}"])
    if args.chees:
        samplers += ["ppmodels-chees"]
    if args.pyro:
        samplers += ["pyro-eager", "pyro-jit"]
    start_compilers(samplers)
    rows = []
    for name in names:
        model, margs, nesting = table[name]
        runs = {s: [] for s in samplers}
        for r in range(args.rounds):
            order = samplers[r % len(samplers) :] + samplers[: r % len(samplers)]  # rotate who goes first
            for s in order:
                if s == "pyro-eager" and name == "hmm":
                    continue
                seed = 100 + r
                if s.startswith("ppmodels"):
                    out = run_ppmodels(model, margs, nesting, seed, "chees" if s == "ppmodels-chees" else "nuts")
                elif s.startswith("numpyro"):
                    out = run_numpyro(name, margs, seed, int(s.split("-")[1]))
                else:
                    out = run_pyro(model, margs, nesting, seed, jit=s == "pyro-jit")
                seconds, samples, compile_s = out
                samples = {k: v for k, v in samples.items() if not k.startswith("x_") and k != "z"}
                runs[s].append((seconds, min_ess(samples), samples, compile_s))
                print(f"{name} round {r} {s}: {seconds:.1f} s, min ESS {runs[s][-1][1]:.0f}", flush=True)
        reference = runs["ppmodels"][0][2]
        best_numpyro = None
        for s in samplers:
            if not runs[s]:
                continue
            secs = [x[0] for x in runs[s]]
            ess_s = [x[1] / x[0] for x in runs[s]]
            warm = ess_s[1:] or ess_s
            z = max(max_z(x[2], reference) for x in runs[s])
            comp = [x[3] for x in runs[s] if x[3] is not None]
            row = {
                "posterior": name,
                "sampler": s,
                "cold_seconds": secs[0],
                "warm_seconds": statistics.median(secs[1:] or secs),
                "min_ess": statistics.median(x[1] for x in runs[s]),
                "cold": ess_s[0],
                "warm": statistics.median(warm),
                "warm_range": (min(warm), max(warm)),
                "max_z": z,
                "compile": comp[0] if comp else None,
            }
            rows.append(row)
            if s.startswith("numpyro"):
                best_numpyro = {k: max(row[k], (best_numpyro or {}).get(k, 0.0)) for k in ("cold", "warm")}
        for row in rows:
            if row["posterior"] == name:
                row["ratio"] = {k: row[k] / best_numpyro[k] if best_numpyro else math.nan for k in ("cold", "warm")}
                print(_cells(row), flush=True)
    print()
    print(f"torch {torch.__version__}, pyro {pyro.__version__}" + _numpyro_version())
    print(f"{WARMUP} warm-up + {SAMPLES} draws per chain; {args.rounds} rounds; cold = first round, warm = median "
          "of the later rounds (range); ratio = ESS/s over NumPyro's best of the same kind; max z = mean "
          "disagreement with ppmodels in MC errors")  # fmt: skip
    columns = ["posterior", "sampler", "seconds cold / warm", "compile (cold)", "min ESS", "ESS/s cold", "ESS/s warm"]
    print("| " + " | ".join([*columns, "ratio cold / warm", "max z"]) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(_cells(r))


def _numpyro_version() -> str:
    try:
        import jax
        import numpyro
    except ImportError:
        return ""
    return f", numpyro {numpyro.__version__}, jax {jax.__version__}"


def _cells(r) -> str:
    comp = f"{r['compile']:.1f}" if r["compile"] is not None else ""
    warm = f"{r['warm']:.1f} ({r['warm_range'][0]:.1f}-{r['warm_range'][1]:.1f})"
    cells = [r["posterior"], r["sampler"], f"{r['cold_seconds']:.1f} / {r['warm_seconds']:.1f}", comp]
    cells += [f"{r['min_ess']:.0f}", f"{r['cold']:.1f}", warm]
    cells += [f"{r['ratio']['cold']:.2f} / {r['ratio']['warm']:.2f}", f"{r['max_z']:.1f}"]
    return "| " + " | ".join(cells) + " |"


if __name__ == "__main__":
    main()
