"""Initial values for models with flat (improper) priors.

Pyro's initialisation strategies (``init_to_uniform``, ``init_to_feasible``,
``init_to_median``, ...) start from a draw of each site's distribution, and
``pyro.distributions.ImproperUniform`` — Stan's flat prior on a real, positive, ordered,
interval or simplex support — cannot be drawn from: NUTS, HMC and every autoguide fail
before inference with "ImproperUniform does not support sampling". The strategies here are
Pyro's, except that a site whose distribution cannot be sampled starts in the unconstrained
space, as NUTS's own ``init_to_uniform`` means to: uniform in ``(-radius, radius)`` there
(``init_to_feasible``: at zero there), mapped to the support.

    >>> from pyro.infer import NUTS
    >>> from pyro.infer.autoguide import AutoMultivariateNormal
    >>> from ppmodels.infer import initialization as init
    >>> kernel = NUTS(model, init_strategy=init.init_to_uniform)              # doctest: +SKIP
    >>> guide = AutoMultivariateNormal(model, init_loc_fn=init.init_to_median)  # doctest: +SKIP
"""

from __future__ import annotations

import functools

import pyro.infer.autoguide.initialization as pyro_init
import torch
from pyro.distributions import ImproperUniform
from torch.distributions import transform_to


def cannot_sample(fn) -> bool:
    """Whether a site's distribution has no ``sample`` (a flat prior)."""
    base = fn
    while hasattr(base, "base_dist"):  # .to_event(), .mask() and other wrappers
        base = base.base_dist
    return isinstance(base, ImproperUniform)


def unconstrained_draw(site, radius: float = 2.0):
    """A value of ``site`` in its support, uniform in ``(-radius, radius)`` in the
    unconstrained space (``radius=0``: the point at zero there), drawn without sampling the
    site's distribution."""
    fn = site["fn"]
    transform = transform_to(fn.support)
    shape = transform.inverse_shape(fn.batch_shape + fn.event_shape)
    like = torch.zeros((), dtype=torch.get_default_dtype())
    if site.get("value") is not None and isinstance(site["value"], torch.Tensor):
        like = site["value"]
    raw = (torch.rand(shape, dtype=like.dtype, device=like.device) * 2 - 1) * radius
    value = transform(raw).detach()
    value._pyro_custom_init = False
    return value


def _improper_aware(strategy, radius):
    def init(site=None):
        if site is None:
            return init
        if cannot_sample(site["fn"]):
            return unconstrained_draw(site, radius)
        return strategy(site)

    return init


def init_to_uniform(site=None, radius: float = 2.0):
    """Pyro's ``init_to_uniform`` (uniform in ``(-radius, radius)`` in the unconstrained
    space), for flat priors too."""
    if site is None:
        return functools.partial(init_to_uniform, radius=radius)
    return _improper_aware(functools.partial(pyro_init.init_to_uniform, radius=radius), radius)(site)


def init_to_feasible(site=None):
    """Pyro's ``init_to_feasible`` (zero in the unconstrained space), for flat priors too."""
    if site is None:
        return init_to_feasible
    return _improper_aware(pyro_init.init_to_feasible, 0.0)(site)


def init_to_sample(site=None):
    """Pyro's ``init_to_sample`` (a prior draw), with flat priors uniform in ``(-2, 2)`` in
    the unconstrained space."""
    if site is None:
        return init_to_sample
    return _improper_aware(pyro_init.init_to_sample, 2.0)(site)


def init_to_median(site=None, num_samples: int = 15):
    """Pyro's ``init_to_median`` (the median of prior draws), for flat priors too (they
    start at zero in the unconstrained space, as ``init_to_feasible``)."""
    if site is None:
        return functools.partial(init_to_median, num_samples=num_samples)
    return _improper_aware(functools.partial(pyro_init.init_to_median, num_samples=num_samples), 0.0)(site)


#: each named guide's initial locations (compare's guides, :func:`~ppmodels.infer.laplace_guide`'s
#: families): Pyro's defaults for its autoguides, with flat priors starting in the
#: unconstrained space
GUIDE_INIT = {
    "meanfield": init_to_feasible,
    "fullrank": init_to_median,
    "lowrank": init_to_median,
}

__all__ = [
    "GUIDE_INIT",
    "cannot_sample",
    "init_to_feasible",
    "init_to_median",
    "init_to_sample",
    "init_to_uniform",
    "unconstrained_draw",
]
