"""MCMC on a user's Pyro model at a compiled sampler's speed: ``mcmc(model, *args)``.

    >>> from ppmodels.infer import mcmc
    >>> result = mcmc(model, x, y)                         # doctest: +SKIP
    >>> result.get_samples()["beta"].mean(0)               # doctest: +SKIP
    >>> result.summary(); result.to_arviz()                # doctest: +SKIP

The model is Pyro's (any sites, flat priors, discrete sites summed out by enumeration); its
potential energy is compiled once (:mod:`ppmodels.infer.density`) and driven by this
library's NUTS/HMC (:mod:`~ppmodels.infer.sampling.nuts`, Pyro's algorithm and defaults).
Several chains run by default, in parallel processes when the machine has the cores
(:mod:`~ppmodels.infer.sampling.parallel`), each from Pyro's ``init_to_uniform`` and with its
own random stream: the same ``seed`` gives the same draws whether the chains run in parallel
or one after another. ``kernel="chees"`` runs ChEES-HMC's many chains in lockstep
(:mod:`~ppmodels.infer.sampling.many_chains`); ``engine="pyro"`` runs Pyro's own
:class:`~pyro.infer.MCMC` instead (and so does an option this kernel does not have, such as
``full_mass=True``; :attr:`MCMCResult.notes` says so).
"""

from __future__ import annotations

import math
import time

from ..density.preparation import prepare
from ..initialization import init_to_uniform
from .many_chains import run_many_chains
from .options import MCMCOptions
from .parallel import can_fork, run_chains
from .pyro_engine import run_pyro_mcmc
from .result import MCMCResult, assemble

#: ``compile="auto"`` picks inductor for chains of at least this many iterations: inductor's
#: compile costs more per operation of the potential's graph than TorchScript's trace, and saves
#: a little per operation at every call, so it pays after some thousands of calls whatever the
#: graph's size (NUTS makes 3-30 calls an iteration). The chains share one compile and run in
#: parallel, so it is each process's sequence of iterations that counts.
INDUCTOR_ITERATIONS = 1000


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

    :param model: a Pyro model (a function, a ``PyroModule``), or an object with ``.model``
        (a pair, a ``pyro.contrib.gp`` model), whose ``.model`` then runs.
    :param kernel: ``"nuts"``, ``"hmc"``, or ``"chees"``: ChEES-HMC's many chains in lockstep,
        the potential evaluated for all of them in one call (:mod:`ppmodels.infer.sampling.chees`;
        64 chains by default, one process, :class:`~ppmodels.infer.sampling.chees.CheesSettings`'s
        options; a ``RuntimeWarning`` where its chains have not mixed).
    :param num_samples: draws kept per chain, after ``warmup_steps`` adapting the step size and
        a diagonal mass matrix.
    :param num_chains: chains (default: one per core, 2 to 4; ChEES 64); they run in ``processes``
        parallel processes (default: as many as the cores allow).
    :param compile: ``"inductor"`` (the potential and its gradient compiled to C++ kernels: the
        longest compile, the fastest call), ``"graph"`` (the traced graph run by TorchScript: a
        second or two to trace, no compiler), ``None`` (eager Pyro), or ``"auto"``
        (:func:`auto_compile`): inductor when each process runs at least
        :data:`INDUCTOR_ITERATIONS` iterations, where its compile time pays, the graph
        otherwise. A model that cannot be traced runs eagerly; ``result.compile["fallback"]``
        says why. ``benchmarks/README.md`` has the compile times and call costs.
    :param seed: the same seed gives the same draws, in parallel or not.
    :param engine: ``"ppmodels"`` (this library's kernel) or ``"pyro"`` (Pyro's ``MCMC``, eager
        as Pyro runs it by default, with ``jit_compile`` where ``compile`` is ``"graph"`` or
        ``"inductor"``).
    :param max_plate_nesting: as Pyro's; needed when discrete sites are enumerated and Pyro
        cannot guess it.
    :param kernel_options: Pyro's kernel options: ``step_size``, ``adapt_step_size``,
        ``adapt_mass_matrix``, ``target_accept_prob``, ``max_tree_depth``, ``num_steps``,
        ``trajectory_length`` here, and ``jitter`` (HMC: each iteration's integration time
        drawn uniformly from the last ``jitter`` of the full one; 1 by default, 0 for Pyro's
        fixed time, see :class:`~ppmodels.infer.sampling.nuts.KernelSettings`); any other
        (``full_mass``, ...) runs Pyro's kernel.
    """
    model = getattr(model, "model", model)  # a pair, a GP module: its model, as compare takes it
    if not callable(model):
        raise TypeError(f"model must be a callable Pyro model or have a .model method, got {type(model).__name__}")
    options = MCMCOptions(
        kernel=kernel,
        num_samples=num_samples,
        warmup_steps=warmup_steps,
        num_chains=num_chains,
        compile=compile,
        seed=seed,
        progress=progress,
        engine=engine,
        max_plate_nesting=max_plate_nesting,
        init_strategy=init_strategy,
        model_kwargs=model_kwargs,
        processes=processes,
        kernel_options=kernel_options,
    )
    if options.many_chains:
        mode = auto_compile(num_samples + warmup_steps, 1, 1) if compile == "auto" else compile
        return run_many_chains(model, args, options, mode)
    if options.runs_pyro:
        return run_pyro_mcmc(model, args, options)
    return _run_nuts(model, args, options)


def _run_nuts(model, args, o: MCMCOptions) -> MCMCResult:
    """This library's NUTS/HMC: the potential built, checked and compiled
    (:mod:`~ppmodels.infer.density.preparation`), one chain per starting point."""
    start = time.perf_counter()
    potential = o.build_potential(model, args)
    # the processes that will really run (one where forking is not possible) decide "auto"
    processes = min(o.processes, o.num_chains)
    processes = processes if can_fork(potential, processes) else 1
    mode = auto_compile(o.num_samples + o.warmup_steps, o.num_chains, processes) if o.compile == "auto" else o.compile
    notes = prepare(potential, mode)
    chains = run_chains(
        potential,
        o.settings,
        list(potential.initial),
        seed=o.seed,
        num_samples=o.num_samples,
        warmup=o.warmup_steps,
        processes=processes,
        progress=o.progress,
    )
    compiled = {"mode": potential.mode, "fallback": potential.fallback, "seconds": potential.compile_seconds}
    return assemble(potential, chains, start, compiled, {"processes": processes}, notes)


__all__ = ["INDUCTOR_ITERATIONS", "auto_compile", "mcmc"]
