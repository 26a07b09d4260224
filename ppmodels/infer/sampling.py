"""MCMC on a user's Pyro model at a compiled sampler's speed: ``mcmc(model, *args)``.

    >>> from ppmodels.infer import mcmc
    >>> result = mcmc(model, x, y)                         # doctest: +SKIP
    >>> result.get_samples()["beta"].mean(0)               # doctest: +SKIP
    >>> result.summary(); result.to_arviz()                # doctest: +SKIP

The model is Pyro's (any sites, flat priors, discrete sites summed out by enumeration); its
potential energy is compiled once (:class:`~ppmodels.infer.potential.Potential`) and driven by
this library's NUTS/HMC (:mod:`ppmodels.infer.nuts`, Pyro's algorithm and defaults). Several
chains run by default, in parallel processes when the machine has the cores, each from
Pyro's ``init_to_uniform`` and with its own random stream: the same ``seed`` gives the same
draws whether the chains run in parallel or one after another. ``engine="pyro"`` runs Pyro's
own :class:`~pyro.infer.MCMC` instead (and so does an option this kernel does not have, such as
``full_mass=True``; :attr:`MCMCResult.notes` says so).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pyro
import torch
from pyro.infer import HMC, MCMC, NUTS
from pyro.ops.stats import effective_sample_size, split_gelman_rubin

from .._validate import check_choice, check_nonnegative_int, check_positive_int
from .batched import BatchedPotential
from .chees import Chees, CheesSettings
from .compiled import quiet_jit_deprecation
from .errors import ImproperPosteriorError
from .initialization import init_to_uniform
from .nuts import Chain, KernelSettings
from .potential import COMPILE_MODES, Potential, improper_posterior
from .problem import plate_nesting

KERNELS = ("nuts", "hmc")
#: kernels that move many chains in lockstep, the potential evaluated for all in one call
MANY_CHAIN_KERNELS = ("chees",)
ENGINES = ("ppmodels", "pyro")
#: ChEES-HMC's chains by default: on a small model, 64 chains' call of the batched potential
#: costs about what one chain's does (eight schools 11 us against 10; the GP 365 against 88)
CHEES_CHAINS = 64
#: above this split r-hat over a many-chain kernel's chains, ``mcmc`` warns and notes it (the
#: threshold of Vehtari et al. 2021; many chains make r-hat precise)
MANY_CHAIN_RHAT = 1.01
#: at most this many chains by default
DEFAULT_MAX_CHAINS = 4
#: ``compile="auto"`` picks inductor for chains of at least this many iterations. Inductor's
#: compile costs about 5-10 ms per operation of the potential's graph and saves about 1-2 us per
#: operation at every call against TorchScript: it pays after some 5,000-10,000 calls, whatever
#: the graph's size, and NUTS makes 3-30 calls an iteration. The chains share one compile and
#: run in parallel, so it is each chain's length that counts.
INDUCTOR_ITERATIONS = 1000
#: two evaluations of the log density at one point closer than this (relative and absolute)
#: are the same: a GPU's atomic additions (``index_add``, ``scatter_add``) sum in an order of
#: their own, a few float32 roundings apart; a dropout layer moves it by percents
RANDOM_TOLERANCE = 1e-5
#: the kernel options this library's kernel runs; any other goes to Pyro's kernel
OWN_OPTIONS = set(KernelSettings.__dataclass_fields__)


def cores() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_chains() -> int:
    """Chains by default: one per core, at most :data:`DEFAULT_MAX_CHAINS`, at least 2 (r-hat
    needs several)."""
    return max(2, min(DEFAULT_MAX_CHAINS, cores()))


@dataclass
class MCMCResult:
    """Draws from ``mcmc``: ``samples[site]`` is ``(chains, draws, *shape)`` in the site's support.

    Pyro's :class:`~pyro.infer.MCMC` reading methods are here with the same names
    (``get_samples``, ``diagnostics``, ``summary``, ``num_chains``), so code written for Pyro's
    object reads this one. ``stats`` holds per chain the adapted step size, the inverse mass
    matrix, tree depths and leapfrog steps; ``compile`` the potential's compile mode, its
    fallback reason and its compile time; ``seconds`` the whole run.
    """

    samples: dict
    divergences: dict
    seconds: float
    engine: str
    compile: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    @property
    def num_chains(self) -> int:
        return next(iter(self.samples.values())).shape[0] if self.samples else 0

    def get_samples(self, num_samples=None, group_by_chain=False) -> dict:
        out = self.samples if group_by_chain else {k: v.reshape(-1, *v.shape[2:]) for k, v in self.samples.items()}
        if num_samples is not None and not group_by_chain:
            out = {k: v[:num_samples] for k, v in out.items()}
        return out

    def diagnostics(self) -> dict:
        """Per site ``{"n_eff", "r_hat"}`` (Pyro's estimators, over all chains) and
        ``"divergences": {"chain 0": [draw indices], ...}``, as Pyro's ``MCMC.diagnostics()``."""
        out = {}
        for name, value in self.samples.items():
            v = value.double()
            out[name] = {
                "n_eff": effective_sample_size(v, chain_dim=0, sample_dim=1),
                "r_hat": split_gelman_rubin(v, chain_dim=0, sample_dim=1),
            }
        out["divergences"] = self.divergences
        return out

    def min_ess(self) -> float:
        d = self.diagnostics()
        return min(float(d[s]["n_eff"].min()) for s in self.samples) if self.samples else float("nan")

    def summary(self, prob=0.9) -> None:
        from pyro.infer.mcmc.util import print_summary

        print_summary(self.samples, prob=prob)

    def to_arviz(self):
        """An ArviZ ``InferenceData`` with the posterior (chains x draws) and the sampler's stats."""
        import arviz as az

        sample_stats = {
            "diverging": np.stack([self.stats["divergent"][c] for c in range(self.num_chains)]),
            "tree_depth": np.stack([self.stats["depths"][c] for c in range(self.num_chains)]),
        } if self.stats.get("divergent") else None  # fmt: skip
        posterior = {k: v.detach().cpu().numpy() for k, v in self.samples.items()}
        return az.from_dict(posterior=posterior, sample_stats=sample_stats)


# -- running ---------------------------------------------------------------------------------------
_WORK = {}  # the parent's potential and settings, inherited by forked chain processes


def _run_chain(task):
    index, z0, seed, num_samples, warmup, threads, progress = task
    if threads:
        torch.set_num_threads(threads)
    potential, settings = _WORK["potential"], _WORK["settings"]
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(index + 1)[index])
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_samples + warmup, desc=f"chain {index}", position=index, leave=True)
    try:
        return Chain(potential, z0, rng, settings).run(num_samples, warmup, progress=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()


def _chains(potential, settings, inits, seed, num_samples, warmup, processes, progress):
    tasks = [(i, z0, seed, num_samples, warmup, 0, progress) for i, z0 in enumerate(inits)]
    _WORK.update(potential=potential, settings=settings)
    try:
        if processes <= 1:
            return [_run_chain(t) for t in tasks]
        tasks = [(*t[:5], 1, t[6]) for t in tasks]  # one thread per process: the chains share the cores
        # fork: the compiled potential is inherited, not rebuilt in each process
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            return pool.map(_run_chain, tasks, chunksize=1)
    finally:
        _WORK.clear()


def _can_fork(potential, processes) -> bool:
    """Chains run in forked processes unless there is one process to run, this is a daemon
    (which may not start processes), the platform cannot fork, or the potential lives on a
    GPU (CUDA does not survive a fork): then one after another, with the same draws."""
    return (
        processes > 1
        and not multiprocessing.current_process().daemon
        and "fork" in multiprocessing.get_all_start_methods()
        and potential.device.type == "cpu"
    )


def _kernel_settings(kernel, options) -> KernelSettings:
    values = dict(options)
    if kernel == "hmc":
        values.pop("max_tree_depth", None)
        if values.get("num_steps") is None and values.get("trajectory_length") is None:
            values["trajectory_length"] = 2 * math.pi
    return KernelSettings(**values)


def auto_compile(iterations: int, num_chains: int, processes: int) -> str:
    """``compile="auto"``'s choice for chains of ``iterations`` each, ``num_chains`` of them on
    ``processes`` processes: inductor when the longest sequence of iterations a process runs
    reaches :data:`INDUCTOR_ITERATIONS`, the TorchScript graph otherwise."""
    sequential = iterations * math.ceil(num_chains / processes)
    return "inductor" if sequential >= INDUCTOR_ITERATIONS else "graph"


def mcmc(
    model,
    *args,
    kernel: str = "nuts",
    num_samples: int = 1000,
    warmup_steps: int = 500,
    num_chains: int | None = None,
    compile: str | None = "auto",
    seed: int = 0,
    progress: bool = False,
    engine: str = "ppmodels",
    max_plate_nesting: int | None = None,
    init_strategy=init_to_uniform,
    model_kwargs: dict | None = None,
    processes: int | None = None,
    **kernel_options,
) -> MCMCResult:
    """NUTS (or HMC) on ``model(*args)``, with the potential compiled.

    :param kernel: ``"nuts"``, ``"hmc"``, or ``"chees"``: ChEES-HMC's many chains in lockstep,
        the potential evaluated for all of them in one call (:mod:`ppmodels.infer.chees`;
        64 chains by default, one process, :class:`~ppmodels.infer.chees.CheesSettings`'s
        options; a ``RuntimeWarning`` where its chains have not mixed).
    :param num_samples: draws kept per chain, after ``warmup_steps`` adapting the step size and
        a diagonal mass matrix.
    :param num_chains: chains (default: one per core, 2 to 4; ChEES 64); they run in ``processes``
        parallel processes (default: as many as the cores allow).
    :param compile: ``"inductor"`` (the potential and its gradient compiled to C++: about a
        second per kernel, 1-6 s on small models, then 12-140 us a call), ``"graph"`` (the
        traced graph run by TorchScript: a second or two, then 0.3-0.7 ms a call), ``None``
        (eager Pyro, about 3 ms a call), or ``"auto"`` (:func:`auto_compile`): inductor when each process runs
        at least :data:`INDUCTOR_ITERATIONS` iterations, where its compile time pays, the graph
        otherwise. A model that cannot be traced runs eagerly;
        ``result.compile["fallback"]`` says why.
    :param seed: the same seed gives the same draws, in parallel or not.
    :param engine: ``"ppmodels"`` (this library's kernel) or ``"pyro"`` (Pyro's ``MCMC``, with
        ``jit_compile`` when ``compile`` is set).
    :param max_plate_nesting: as Pyro's; needed when discrete sites are enumerated and Pyro
        cannot guess it.
    :param kernel_options: Pyro's kernel options: ``step_size``, ``adapt_step_size``,
        ``adapt_mass_matrix``, ``target_accept_prob``, ``max_tree_depth``, ``num_steps``,
        ``trajectory_length`` here, and ``jitter`` (HMC: each iteration's integration time
        drawn uniformly from the last ``jitter`` of the full one; 1 by default, 0 for Pyro's
        fixed time, see :class:`~ppmodels.infer.nuts.KernelSettings`); any other
        (``full_mass``, ...) runs Pyro's kernel.
    """
    check_choice(kernel, "kernel", [*KERNELS, *MANY_CHAIN_KERNELS])
    check_choice(engine, "engine", list(ENGINES))
    check_positive_int(num_samples, "num_samples")
    check_nonnegative_int(warmup_steps, "warmup_steps")
    if compile is not None:
        check_choice(compile, "compile", ["auto", *COMPILE_MODES])
    if not callable(model):
        raise TypeError(f"model must be a callable Pyro model, got {type(model).__name__}")
    if num_chains is None:
        num_chains = CHEES_CHAINS if kernel in MANY_CHAIN_KERNELS else default_chains()
    check_positive_int(num_chains, "num_chains")
    processes = min(num_chains, cores()) if processes is None else check_positive_int(processes, "processes")
    notes = []
    if kernel in MANY_CHAIN_KERNELS:
        return _many_chains(model, args, model_kwargs, num_samples, warmup_steps, num_chains, compile, seed,
                            progress, engine, max_plate_nesting, init_strategy, processes, kernel_options)  # fmt: skip
    foreign = sorted(set(kernel_options) - OWN_OPTIONS)
    if "jitter" in kernel_options and (kernel != "hmc" or engine == "pyro" or foreign):
        other = "NUTS" if kernel != "hmc" else "Pyro's HMC"
        raise ValueError(
            f"jitter={kernel_options['jitter']!r} is an option of this library's HMC (kernel='hmc', engine='ppmodels', "
            f"no option only Pyro's kernel has), not of {other}: got kernel={kernel!r}, engine={engine!r}"
            + (f", options {foreign}" if foreign else "")
        )
    if engine == "pyro" or foreign:
        if foreign and engine != "pyro":
            notes.append(f"Pyro's MCMC ran: this library's kernel has no option {foreign}")
        if kernel == "hmc":
            notes.append("Pyro's HMC integrates for a fixed time (2 pi by default), which a Gaussian posterior's "
                         "adapted dynamics can make periodic; this library's HMC jitters it")  # fmt: skip
        return _pyro_mcmc(model, args, model_kwargs, kernel, num_samples, warmup_steps, num_chains, compile, seed,
                          progress, max_plate_nesting, init_strategy, kernel_options, notes)  # fmt: skip
    settings = _kernel_settings(kernel, kernel_options)
    start = time.perf_counter()
    potential = _uncompiled_potential(model, args, model_kwargs, max_plate_nesting, num_chains, init_strategy, seed)
    # the processes that will really run (one where forking is not possible) decide "auto"
    processes = min(processes, num_chains) if _can_fork(potential, min(processes, num_chains)) else 1
    if compile == "auto":
        compile = auto_compile(num_samples + warmup_steps, num_chains, processes)
    _refuse_a_random_potential(potential)
    if compile is not None:
        potential.compile(compile)
    if potential.fallback:
        notes.append(f"compile={compile!r} was not used: {potential.fallback}; the potential ran eagerly")
    if potential.note:
        notes.append(potential.note)
    _refuse_flat_directions(potential)
    chains = _chains(potential, settings, list(potential.initial), seed, num_samples, warmup_steps, processes, progress)
    compiled = {"mode": potential.mode, "fallback": potential.fallback, "seconds": potential.compile_seconds}
    return _result(potential, chains, start, compiled, {"processes": processes}, notes)


def _uncompiled_potential(model, args, model_kwargs, max_plate_nesting, num_chains, init_strategy, seed):
    """The model's potential, its chains' starts drawn from ``seed``, not yet compiled."""
    pyro.set_rng_seed(seed)
    potential = Potential(model, args, model_kwargs, compile=None, max_plate_nesting=max_plate_nesting,
                          num_chains=num_chains, init_strategy=init_strategy)  # fmt: skip
    if not potential.dim:
        raise ValueError("the model has no continuous latent sites to sample (every site is observed or discrete)")
    return potential


def _result(potential, chains, start, compiled, extra_stats, notes) -> MCMCResult:
    draws = np.stack([c.draws for c in chains])
    samples = potential.constrain(draws)
    seconds = time.perf_counter() - start
    stats = {
        "step_size": [c.step_size for c in chains],
        "inverse_mass": [c.inverse_mass for c in chains],
        "depths": [c.depths for c in chains],
        "leapfrogs": [c.leapfrogs for c in chains],
        "warmup_leapfrogs": [c.warmup_leapfrogs for c in chains],
        "divergent": [c.divergent for c in chains],
        "accept_prob": [c.accept_prob for c in chains],
        **extra_stats,
    }
    divergences = {f"chain {i}": np.flatnonzero(c.divergent).tolist() for i, c in enumerate(chains)}
    return MCMCResult(samples, divergences, seconds, "ppmodels", compiled, stats, notes)


def _many_chains(model, args, model_kwargs, num_samples, warmup, num_chains, compile, seed, progress, engine,
                 max_plate_nesting, init_strategy, processes, options) -> MCMCResult:  # fmt: skip
    """ChEES-HMC (:mod:`ppmodels.infer.chees`): every chain in one process, the potential
    evaluated for all of them in one call (:class:`~ppmodels.infer.batched.BatchedPotential`);
    ``processes`` run the NUTS chains it starts from."""
    if engine != "ppmodels":
        raise ValueError(
            f"kernel='chees' is this library's kernel (Pyro has none): engine must be 'ppmodels', got {engine!r}"
        )
    accepted = sorted(CheesSettings.__dataclass_fields__)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"kernel='chees' has no option {', '.join(map(repr, unknown))}; its options are {accepted}")
    settings = CheesSettings(**options)
    if num_chains < 2:
        raise ValueError(
            f"kernel='chees' adapts its trajectory length from how far its chains spread: num_chains must be at "
            f"least 2 (64 by default), got {num_chains}"
        )
    start = time.perf_counter()
    potential = _uncompiled_potential(model, args, model_kwargs, max_plate_nesting, num_chains, init_strategy, seed)
    if compile == "auto":
        compile = auto_compile(num_samples + warmup, 1, 1)
    _refuse_a_random_potential(potential)
    if compile is not None:  # TorchScript for the short NUTS start; the batched graph as asked
        potential.compile("graph")
    notes = []
    if potential.fallback:
        notes.append(f"compile={compile!r} was not used: {potential.fallback}; the potential ran eagerly")
    _refuse_flat_directions(potential)
    z0, inv_mass, step_size = _start_many_chains(potential, num_chains, seed, settings.start_warmup, processes)
    batched = BatchedPotential(potential, num_chains, compile)
    if batched.note:
        notes.append(batched.note)
    if batched.mode is None:  # correct, but each iteration costs num_chains single-chain iterations
        warnings.warn(
            f"kernel='chees' evaluates its {num_chains} chains one after another ({batched.note}): each iteration "
            f"costs about {num_chains} of NUTS's; kernel='nuts' or fewer chains (num_chains) would be faster",
            RuntimeWarning,
            stacklevel=3,
        )
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_samples + warmup, desc=f"{num_chains} chains")
    try:
        sampler = Chees(batched, z0, rng, settings, inv_mass=inv_mass, step_size=step_size)
        chains = sampler.run(num_samples, warmup, progress=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
    unmixed = _unmixed(potential, chains)
    if unmixed:
        notes.append(unmixed)
        warnings.warn(unmixed, RuntimeWarning, stacklevel=3)
    compiled = {"mode": batched.mode or potential.mode, "fallback": potential.fallback,
                "batched": batched.mode is not None,
                "seconds": potential.compile_seconds + batched.compile_seconds}  # fmt: skip
    return _result(potential, chains, start, compiled, {"processes": 1, "trajectory_length": sampler.trajectory}, notes)


def _unmixed(potential, chains) -> str | None:
    """What to say when the chains disagree: the largest split r-hat over the unconstrained
    coordinates, where it is above :data:`MANY_CHAIN_RHAT`."""
    draws = torch.as_tensor(np.stack([c.draws for c in chains]))
    r_hat = split_gelman_rubin(draws, chain_dim=0, sample_dim=1).numpy()
    worst = int(np.nanargmax(np.where(np.isfinite(r_hat), r_hat, -np.inf))) if np.isfinite(r_hat).any() else None
    if worst is None or r_hat[worst] <= MANY_CHAIN_RHAT:
        return None
    labels = [f"{n}[{j}]" if size > 1 else n for n, size in zip(potential.names, potential.sizes) for j in range(size)]
    return (
        f"the {len(chains)} chains have not mixed: split r-hat {r_hat[worst]:.3f} > {MANY_CHAIN_RHAT} at "
        f"{labels[worst]} (unconstrained); the draws may be off. Run a longer warm-up (warmup_steps) or NUTS"
    )


def _start_many_chains(potential, num_chains, seed, warmup, processes):
    """Where ChEES's chains start: a short NUTS run of :func:`default_chains` chains from
    Pyro's dispersed starts (each chain with its own step size and tree, so one that starts in
    a bad region walks out of it, as in ``mcmc``'s NUTS), then ChEES's chains from those
    chains' last draws, shared out among them, with their mass matrix and step size.

    Started dispersed themselves, ChEES's chains share one step size that the worst of them
    drives to nothing; started at one point, they never leave a region a long way from the
    mass (posteriordb's ``arma11`` and ``kilpisjarvi``)."""
    scouts = min(default_chains(), num_chains)
    draws_each = math.ceil(num_chains / scouts)
    processes = min(scouts, processes) if _can_fork(potential, min(scouts, processes)) else 1
    inits = list(potential.initial[:scouts])
    runs = _chains(potential, KernelSettings(), inits, seed, draws_each, warmup, processes, False)
    z0 = np.stack([runs[i % scouts].draws[-1 - i // scouts] for i in range(num_chains)])
    inv_mass = np.mean([r.inverse_mass for r in runs], axis=0)
    step_size = float(np.exp(np.mean([math.log(r.step_size) for r in runs])))
    return z0, inv_mass, step_size


def _refuse_a_random_potential(potential):
    """A model that draws random numbers of its own (``torch.randn`` on its data, a dropout
    layer in training mode) has a different log density at each evaluation of one point:
    NUTS's gradient steps and its choice among a trajectory's points then mean nothing, and
    its draws are not the posterior's. Refused before anything is compiled."""
    z = potential._tensor(potential.initial[0])
    first, second = (float(potential.eager(z)[0]) for _ in range(2))
    same = math.isclose(first, second, rel_tol=RANDOM_TOLERANCE, abs_tol=RANDOM_TOLERANCE)
    if not same and not (math.isnan(first) and math.isnan(second)):
        raise ValueError(
            f"the model's log density is random: at the same point it was {-first:.6g} and then {-second:.6g}. "
            "It draws random numbers outside pyro.sample (torch.randn or torch.rand on its data, a dropout layer in "
            "training mode), so NUTS's steps and the draws it keeps would not be the posterior's. Draw them once "
            "outside the model and pass them in, or call .eval() on the network"
        )


def _refuse_flat_directions(potential):
    """An improper posterior, flat along some elements, is refused before the chains run."""
    flat = potential.flat_elements()
    if flat:
        raise improper_posterior(flat, dict(zip(potential.names, potential.sizes)))


def check_proper(model, args=(), kwargs=None, max_plate_nesting=None) -> None:
    """Raise :class:`~ppmodels.infer.errors.ImproperPosteriorError`, as ``mcmc`` does before its
    chains, where the posterior is flat along some latent elements (a site nothing reads, the
    masked-out elements of an ``obs_mask`` site): for inference that runs no MCMC (``compare``
    with guides only), whose guides would otherwise widen along them as long as they train.
    The check evaluates Pyro's potential three times, eagerly; where Pyro cannot build one for
    the model (a discrete site it cannot enumerate, a subsample plate), nothing is checked."""
    try:
        potential = Potential(model, args, kwargs, compile=None, max_plate_nesting=max_plate_nesting)
    except ImproperPosteriorError:
        raise
    except Exception:  # noqa: BLE001 (no potential to check with: the inference runs as it would)
        return
    if potential.dim:
        _refuse_flat_directions(potential)


def _pyro_mcmc(model, args, model_kwargs, kernel, num_samples, warmup, num_chains, compile, seed, progress,
               max_plate_nesting, init_strategy, options, notes) -> MCMCResult:  # fmt: skip
    options = dict(options)
    if kernel == "hmc":
        options.pop("max_tree_depth", None)
    options.setdefault("init_strategy", init_strategy)
    if max_plate_nesting is None:
        max_plate_nesting = plate_nesting(model, args, model_kwargs)
    options.setdefault("max_plate_nesting", max_plate_nesting)
    if compile is not None:
        options.setdefault("jit_compile", True)
        options.setdefault("ignore_jit_warnings", True)
    pyro.set_rng_seed(seed)
    start = time.perf_counter()
    sampler = MCMC((NUTS if kernel == "nuts" else HMC)(model, **options), num_samples=num_samples,
                   warmup_steps=warmup, num_chains=num_chains, disable_progbar=not progress)  # fmt: skip
    with quiet_jit_deprecation():  # Pyro's jit_compile
        sampler.run(*args, **(model_kwargs or {}))
    samples = sampler.get_samples(group_by_chain=True)
    divergences = sampler.diagnostics().get("divergences") or {}
    compiled = {"mode": "pyro-jit" if options.get("jit_compile") else None, "fallback": None, "seconds": 0.0}
    return MCMCResult(samples, divergences, time.perf_counter() - start, "pyro", compiled, {}, notes)


__all__ = [
    "CHEES_CHAINS",
    "ENGINES",
    "KERNELS",
    "MANY_CHAIN_KERNELS",
    "MCMCResult",
    "auto_compile",
    "check_proper",
    "cores",
    "default_chains",
    "mcmc",
]
