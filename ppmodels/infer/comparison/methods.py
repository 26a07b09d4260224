"""compare's methods by kind, and how a user names one.

A method has a ``name``, a ``kind`` (``"vi"``, ``"mcmc"`` or ``"draws"``), ``fresh()`` (the
method ready for another run: an untrained copy of a guide) and ``run(problem, options)``
returning its :class:`~ppmodels.infer.comparison.report.MethodResult` and the warnings its own
diagnostics raise. :class:`~ppmodels.infer.comparison.guides.GuideMethod` trains a guide,
:class:`~ppmodels.infer.comparison.kernels.KernelMethod` runs an MCMC kernel, and
:class:`DrawsMethod` here takes any inference of the user's. A new kind of method is a new
class with the same ``run``.
"""

from __future__ import annotations

import time

import pyro

from .guides import GUIDES, GuideMethod
from .kernels import KERNELS, KernelMethod


class DrawsMethod:
    """Any inference of the user's as a method: ``draws(model, args)`` returns posterior draws
    ``{latent site: (S, *shape)}`` (e.g. the exact posterior of a conjugate model, or another
    library's sampler)."""

    kind = "draws"

    def __init__(self, name, draws):
        if not callable(draws):
            raise TypeError(
                f"`draws` must be a callable (model, args) -> {{site: draws}}, but got {type(draws).__name__}"
            )
        self.name, self.draws = name, draws

    def fresh(self) -> DrawsMethod:
        return self

    def run(self, problem, settings) -> tuple:
        pyro.set_rng_seed(settings.seed)
        start = time.perf_counter()
        site_samples = self.draws(problem.bound(problem.model_fn), problem.train)
        seconds = time.perf_counter() - start
        missing = [s for s in problem.sites if s not in site_samples]
        if not isinstance(site_samples, dict) or missing:
            raise ValueError(
                f"method {self.name!r} must return {{latent site: (S, *shape) draws}} for every latent site; it misses "
                f"{missing or 'all (not a dict)'}"
            )
        sizes = {k: v.shape[0] for k, v in site_samples.items() if k in problem.sites}
        site_samples = {s: site_samples[s].reshape(sizes[s], *shape) for s, shape in problem.sites.items()}
        return problem.result(self, site_samples, seconds), []


def method_of(spec):
    """A compare method from how a user names it: a guide name (:data:`GUIDES`), a kernel
    name (:data:`KERNELS`), a guide (a callable, named by its ``__name__``), a ``(name,
    guide)`` pair, or a method object (:class:`GuideMethod`, :class:`KernelMethod`,
    :class:`DrawsMethod`)."""
    if isinstance(spec, str):
        if spec in GUIDES:
            return GuideMethod(spec)
        if spec in KERNELS:
            return KernelMethod(spec)
        raise ValueError(
            f"unknown method {spec!r}; valid names are guides {sorted(GUIDES)} and MCMC kernels {sorted(KERNELS)} "
            "(or pass your own guide)"
        )
    if isinstance(spec, (GuideMethod, KernelMethod, DrawsMethod)):
        return spec
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and callable(spec[1]):
        return GuideMethod(*spec)
    if callable(spec):
        return GuideMethod(getattr(spec, "__name__", type(spec).__name__), spec)
    raise TypeError(
        f"a method must be a name in {sorted(GUIDES) + sorted(KERNELS)}, a guide (a callable), a (name, guide) pair or "
        f"a DrawsMethod, but got {type(spec).__name__}"
    )


__all__ = ["DrawsMethod", "method_of"]
