"""ChEES-HMC's run: every chain in one process, the potential evaluated for all of them in one
call (:class:`~ppmodels.infer.density.many_points.BatchedPotential`), started from a short NUTS
run, and checked for mixing after its draws."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch
from pyro.ops.stats import split_gelman_rubin

from ..._progress import progress_bar
from ..density.many_points import BatchedPotential
from ..density.preparation import prepare
from .chees import Chees
from .nuts import KernelSettings
from .options import MCMCOptions, default_chains
from .parallel import can_fork, run_chains
from .result import MCMCResult, assemble

#: above this split r-hat over a many-chain kernel's chains, ``mcmc`` warns and notes it (the
#: threshold of Vehtari et al. 2021; many chains make r-hat precise)
MANY_CHAIN_RHAT = 1.01


def run_many_chains(model, args, options: MCMCOptions, compile: str | None) -> MCMCResult:
    """ChEES-HMC (:mod:`~ppmodels.infer.sampling.chees`) on ``model(*args)`` with ``options``;
    ``compile`` the batched potential's mode (``None``: eager). The NUTS run its chains start
    from uses the TorchScript graph, which needs no compiler and serves a short run, on
    ``options.processes``."""
    o = options
    start = time.perf_counter()
    potential = o.build_potential(model, args)
    notes = prepare(potential, "graph" if compile is not None else None)
    z0, inv_mass, step_size = _start(potential, o)
    batched = BatchedPotential(potential, o.num_chains, compile)
    if batched.note:
        notes.append(batched.note)
    if batched.mode is None:  # correct, but each iteration costs num_chains single-chain iterations
        warnings.warn(
            f"kernel='chees' evaluates its {o.num_chains} chains one after another ({batched.note}): each iteration "
            f"costs about {o.num_chains} of NUTS's; kernel='nuts' or fewer chains (num_chains) would be faster",
            RuntimeWarning,
            stacklevel=3,
        )
    rng = np.random.default_rng(np.random.SeedSequence(o.seed))
    sampler = Chees(batched, z0, rng, o.settings, inv_mass=inv_mass, step_size=step_size)
    with progress_bar(o.progress, o.num_samples + o.warmup_steps, f"{o.num_chains} chains") as update:
        chains = sampler.run(o.num_samples, o.warmup_steps, progress=update)
    unmixed = _unmixed(potential, chains)
    if unmixed:
        notes.append(unmixed)
        warnings.warn(unmixed, RuntimeWarning, stacklevel=3)
    compiled = {
        "mode": batched.mode or potential.mode,
        "fallback": potential.fallback,
        "batched": batched.mode is not None,
        "seconds": potential.compile_seconds + batched.compile_seconds,
    }
    extra = {"processes": 1, "trajectory_length": sampler.trajectory}
    return assemble(potential, chains, start, compiled, extra, notes)


def _start(potential, o: MCMCOptions) -> tuple:
    """Where ChEES's chains start: a short NUTS run of :func:`default_chains` chains from
    Pyro's dispersed starts (each chain with its own step size and tree, so one that starts in
    a bad region walks out of it, as in ``mcmc``'s NUTS), then ChEES's chains from those
    chains' last draws, shared out among them, with their mass matrix and step size.

    Started dispersed themselves, ChEES's chains share one step size that the worst of them
    drives to nothing; started at one point, they never leave a region a long way from the
    mass (posteriordb's ``arma11`` and ``kilpisjarvi``)."""
    scouts = min(default_chains(), o.num_chains)
    draws_each = math.ceil(o.num_chains / scouts)
    processes = min(scouts, o.processes) if can_fork(potential, min(scouts, o.processes)) else 1
    inits = list(potential.initial[:scouts])
    runs = run_chains(
        potential,
        KernelSettings(),
        inits,
        seed=o.seed,
        num_samples=draws_each,
        warmup=o.settings.start_warmup,
        processes=processes,
        progress=False,
    )
    z0 = np.stack([runs[i % scouts].draws[-1 - i // scouts] for i in range(o.num_chains)])
    inv_mass = np.mean([r.inverse_mass for r in runs], axis=0)
    step_size = float(np.exp(np.mean([math.log(r.step_size) for r in runs])))
    return z0, inv_mass, step_size


def _unmixed(potential, chains) -> str | None:
    """What to say when the chains disagree: the largest split r-hat over the unconstrained
    coordinates, where it is above :data:`MANY_CHAIN_RHAT`."""
    draws = torch.as_tensor(np.stack([c.draws for c in chains]))
    r_hat = split_gelman_rubin(draws, chain_dim=0, sample_dim=1).numpy()
    worst = int(np.nanargmax(np.where(np.isfinite(r_hat), r_hat, -np.inf))) if np.isfinite(r_hat).any() else None
    if worst is None or r_hat[worst] <= MANY_CHAIN_RHAT:
        return None
    return (
        f"the {len(chains)} chains have not mixed: split r-hat {r_hat[worst]:.3f} > {MANY_CHAIN_RHAT} at "
        f"{potential.labels()[worst]} (unconstrained); the draws may be off. Run a longer warm-up (warmup_steps) "
        "or NUTS"
    )


__all__ = ["MANY_CHAIN_RHAT", "run_many_chains"]
