"""Pyro's own :class:`~pyro.infer.MCMC` from ``mcmc``'s options (``engine="pyro"``, or an option
only Pyro's kernel has), for comparing this library's sampler against Pyro's."""

from __future__ import annotations

import time
import warnings

import pyro
from pyro.infer import HMC, MCMC, NUTS

from ..graphs.backends import COMPILE_MODES
from ..graphs.tracing import quiet_jit_deprecation
from ..program.sites import plate_nesting
from .options import MCMCOptions
from .result import MCMCResult


def run_pyro_mcmc(model, args, options: MCMCOptions) -> MCMCResult:
    """Pyro's ``MCMC`` with its ``NUTS`` or ``HMC`` kernel on ``model(*args)``: the kernel
    options as given, Pyro's ``jit_compile`` where ``options.compile`` is ``"graph"`` or
    ``"inductor"`` (``"auto"`` and ``None`` leave Pyro's default: eager), and the notes saying
    why Pyro's kernel ran and how it differs."""
    o = options
    notes = []
    if o.foreign and o.engine != "pyro":
        notes.append(f"Pyro's MCMC ran: this library's kernel has no option {list(o.foreign)}")
    if o.kernel == "hmc":
        notes.append(
            "Pyro's HMC integrates for a fixed time (2 pi by default), which a Gaussian posterior's adapted dynamics "
            "can make periodic; this library's HMC jitters it"
        )
    kernel_options = dict(o.kernel_options)
    if o.kernel == "hmc":
        kernel_options.pop("max_tree_depth", None)
    kernel_options.setdefault("init_strategy", o.init_strategy)
    nesting = o.max_plate_nesting
    if nesting is None:
        nesting = plate_nesting(model, args, o.model_kwargs)
    kernel_options.setdefault("max_plate_nesting", nesting)
    if o.compile in COMPILE_MODES:  # asked for: Pyro's own JIT ("auto" leaves Pyro's default, eager)
        kernel_options.setdefault("jit_compile", True)
        kernel_options.setdefault("ignore_jit_warnings", True)
    pyro.set_rng_seed(o.seed)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_jit_deprecation():  # Pyro's jit_compile
            kernel = (NUTS if o.kernel == "nuts" else HMC)(model, **kernel_options)
            sampler = MCMC(
                kernel,
                num_samples=o.num_samples,
                warmup_steps=o.warmup_steps,
                num_chains=o.num_chains,
                disable_progbar=not o.progress,
            )
            sampler.run(*args, **o.model_kwargs)
    for warning in caught:
        if "Chains will be drawn sequentially" in str(warning.message):  # Pyro keeps a core free: a note
            notes.append(f"Pyro's MCMC drew its chains one after another ({warning.message})")
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    samples = sampler.get_samples(group_by_chain=True)
    divergences = sampler.diagnostics().get("divergences") or {}
    compiled = {"mode": "pyro-jit" if kernel_options.get("jit_compile") else None, "fallback": None, "seconds": 0.0}
    return MCMCResult(samples, divergences, time.perf_counter() - start, "pyro", compiled, {}, notes)


__all__ = ["run_pyro_mcmc"]
