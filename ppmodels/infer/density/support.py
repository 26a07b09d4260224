"""What a log density must be before anything samples or trains on it: proper (not flat along
some latent elements) and deterministic (the same value at the same point). Each refusal
names what is wrong and the fix.

- An improper posterior, flat along elements that nothing in the model reads and whose prior
  is flat or masked out: NUTS would drift along them without end, and a guide's scale along
  them would grow as long as it trains (:func:`flat_elements`, :func:`improper_posterior`).
- A random log density (``torch.randn`` on the data, a dropout layer in training mode): NUTS's
  steps and the draws it keeps would not be the posterior's (:func:`refuse_a_random_density`).
"""

from __future__ import annotations

import math

import numpy as np
import pyro
import torch

from ..errors import ImproperPosteriorError, RandomDensityError
from ..program.sites import prior_trace

#: an element whose gradient is zero is flat (the posterior improper along it) only where the
#: potential's value is the same this far away, either way, in the unconstrained space; where
#: all such elements together are not, at most FLAT_SINGLES of them are tried one by one
FLAT_SHIFT = 10.0
FLAT_SINGLES = 64
#: two evaluations of the log density at one point closer than this (relative and absolute)
#: are the same: a GPU's atomic additions (``index_add``, ``scatter_add``) sum in an order of
#: their own, a few float32 roundings apart, where a dropout layer moves it by percents
RANDOM_TOLERANCE = 1e-5


def flat_elements(potential) -> dict:
    """``{site: [element index, ...]}``: the elements on which ``potential`` (a
    :class:`~ppmodels.infer.density.potential.Potential`) does not depend, its gradient exactly
    zero there at three points around the initial one, and its value the same far along them
    (:func:`_constant_along`). The posterior is then flat, improper, along them: an element of
    a latent site that nothing reads and whose prior is flat or masked out
    (``pyro.sample(..., obs_mask=...)`` makes such a site, ``NAME_unobserved``, of the full
    shape, its observed elements masked out). Any proper prior makes the gradient nonzero."""
    generator = np.random.default_rng(0)
    flat = np.ones(potential.dim, dtype=bool)
    finite = []
    for scale in (0.0, 0.5, 2.0):
        z = potential.initial[0] + scale * generator.standard_normal(potential.dim)
        value, grad = potential(z)
        if np.isfinite(value) and np.isfinite(grad).all():
            flat &= grad == 0
            finite.append((z, value))
    if not finite or not flat.any():
        return {}
    confirmed = np.zeros(potential.dim, dtype=bool)
    confirmed[_constant_along(potential, *finite[0], np.flatnonzero(flat))] = True
    out, start = {}, 0
    for name, shape, size in zip(potential.names, potential.shapes, potential.sizes):
        where = np.flatnonzero(confirmed[start : start + size])
        if len(where):
            out[name] = [tuple(int(i) for i in np.unravel_index(k, shape)) if shape else () for k in where]
        start += size
    return out


def _constant_along(potential, z, value, elements) -> np.ndarray:
    """Those of ``elements`` along which the potential keeps its ``value`` at ``z`` exactly,
    moved :data:`FLAT_SHIFT` either way: all of them together, or else each alone (the first
    :data:`FLAT_SINGLES`). A zero gradient alone is also a plateau's: a location under a
    ``Uniform(a - 1, a + 1)`` likelihood, flat where the data allow it and impossible beyond,
    is a proper posterior."""

    def constant(which):
        for step in (FLAT_SHIFT, -FLAT_SHIFT):
            moved = z.copy()
            moved[which] += step
            if potential(moved)[0] != value:
                return False
        return True

    if constant(elements):
        return elements
    return np.array([i for i in elements[:FLAT_SINGLES] if constant([i])], dtype=int)


def refuse_flat_directions(potential) -> None:
    """Raise :class:`~ppmodels.infer.errors.ImproperPosteriorError` where the posterior is flat
    along some elements (:func:`flat_elements`)."""
    flat = flat_elements(potential)
    if flat:
        raise improper_posterior(flat, dict(zip(potential.names, potential.sizes)))


def refuse_a_random_density(potential) -> None:
    """Raise :class:`~ppmodels.infer.errors.RandomDensityError` (a ``ValueError``) where the
    model draws random numbers of its own (``torch.randn`` on
    its data, a dropout layer in training mode): its log density then differs at each
    evaluation of one point, NUTS's gradient steps and its choice among a trajectory's points
    mean nothing, and its draws are not the posterior's. Two eager evaluations at the first
    starting point."""
    z = potential.as_tensor(potential.initial[0])
    first, second = (float(potential.eager(z)[0]) for _ in range(2))
    same = math.isclose(first, second, rel_tol=RANDOM_TOLERANCE, abs_tol=RANDOM_TOLERANCE)
    if not same and not (math.isnan(first) and math.isnan(second)):
        raise RandomDensityError(
            f"the model's log density is random: at the same point it was {-first:.6g} and then {-second:.6g}. "
            "It draws random numbers outside pyro.sample (torch.randn or torch.rand on its data, a dropout layer in "
            "training mode), so NUTS's steps and the draws it keeps would not be the posterior's. Draw them once "
            "outside the model and pass them in, or call .eval() on the network"
        )


def improper_posterior(flat: dict, sizes: dict | None = None) -> ImproperPosteriorError:
    """The error for a posterior flat along ``flat`` (``{site: [element index, ...]}``, ``[()]``
    for a whole site; ``sizes`` the sites' element counts): NUTS would drift along them without
    end, its deepest trees at every step (Pyro's NUTS too, on the same potential), and a
    guide's scale along them would grow as long as it trains."""
    parts = []
    for name, elements in flat.items():
        shown = ", ".join(str(list(e)) for e in elements[:6]) + (", ..." if len(elements) > 6 else "")
        whole = not elements[0] or sizes is None
        parts.append(f"site {name!r}" + ("" if whole else f" ({len(elements)} of its {sizes[name]} elements: {shown})"))
    obs_mask = (
        "pyro.sample(..., obs_mask=...) makes its NAME_unobserved site of the full shape, its observed elements "
        "masked out (Pyro means it for guides): for MCMC, sample only the missing entries as a site of their own "
        "and put them into the data with index_put. "
    )
    return ImproperPosteriorError(
        f"the posterior is improper: the model's density does not depend on {'; '.join(parts)}. Nothing in the "
        "model reads them and their prior is flat or masked out, so NUTS would drift along them without end "
        "(and a guide's scale along them would grow as long as it trains). "
        + (obs_mask if any(name.endswith("_unobserved") for name in flat) else "")
        + "Give each a proper prior, or leave out the sites nothing reads."
    )


def unread_sites(model, args, kwargs) -> list:
    """The continuous latent sites whose values the model's log density does not read."""
    trace = prior_trace(model, tuple(args), kwargs)
    names = [n for n, site in trace.nodes.items() if site["type"] == "sample" and not site["is_observed"]]
    values = {n: trace.nodes[n]["value"].detach().requires_grad_(True) for n in names}
    values = {n: v for n, v in values.items() if v.is_floating_point()}
    with torch.enable_grad(), pyro.validation_enabled(False):
        again = pyro.poutine.trace(pyro.poutine.condition(model, data=values)).get_trace(*args, **(kwargs or {}))
        grads = torch.autograd.grad(again.log_prob_sum(), list(values.values()), allow_unused=True)
    return [n for n, g in zip(values, grads) if g is None]


__all__ = [
    "FLAT_SHIFT",
    "FLAT_SINGLES",
    "RANDOM_TOLERANCE",
    "flat_elements",
    "improper_posterior",
    "refuse_a_random_density",
    "refuse_flat_directions",
    "unread_sites",
]
