"""A model's sites as one trace shows them: its latent sites and their shapes, which of them
are discrete, how many plates nest, one name per latent element.

The trace draws the latents from the prior; flat priors (``ImproperUniform``), which cannot be
drawn from, start uniform in ``(-2, 2)`` in the unconstrained space
(:mod:`ppmodels.infer.initialization`). Pyro's own guess of ``max_plate_nesting`` draws from the
prior, which a flat prior cannot: :func:`plate_nesting` is the guess every engine here uses.
"""

from __future__ import annotations

import math

import pyro
import torch
from pyro import poutine
from pyro.infer.autoguide.initialization import InitMessenger
from pyro.poutine.util import prune_subsample_sites

from .. import initialization as init


def model_function(model):
    """The model callable of ``model``: its ``.model`` where it has one (a pair, a problem),
    else ``model`` itself; ``TypeError`` where that is not callable."""
    fn = getattr(model, "model", model)
    if not callable(fn):
        raise TypeError(
            f"`model` must be a Pyro model (a callable) or have a .model method, but got {type(model).__name__}"
        )
    return fn


def prior_trace(model_fn, args, kwargs=None):
    """A trace of the model with its latents drawn from the prior (flat priors, which cannot
    be drawn from, uniform in (-2, 2) in the unconstrained space), without gradients."""
    with torch.no_grad(), poutine.block(hide_types=["param"]), pyro.validation_enabled(False):
        traced = poutine.trace(InitMessenger(init.init_to_sample)(model_fn))
        return prune_subsample_sites(traced.get_trace(*args, **(kwargs or {})))


def is_discrete(fn) -> bool:
    """Whether a sample site's distribution is discrete (a plate's subsample site is not a
    latent: it is left out)."""
    support = getattr(fn, "support", None)
    return bool(getattr(support, "is_discrete", False)) and type(fn).__name__ != "_Subsample"


def latent_sites(model_fn, args, kwargs=None) -> tuple:
    """The model's continuous latent sites and their shapes in execution order, its discrete
    latent sites, how many batch dimensions its sites have at most (plates or not), and how
    many plate dimensions (Pyro's ``max_plate_nesting``)."""
    trace = prior_trace(model_fn, args, kwargs)
    samples = [s for s in trace.nodes.values() if s["type"] == "sample"]
    sites = {s["name"]: tuple(s["value"].shape) for s in samples if not s["is_observed"] and not is_discrete(s["fn"])}
    discrete = {s["name"]: tuple(s["value"].shape) for s in samples if not s["is_observed"] and is_discrete(s["fn"])}
    batch = max([len(s["fn"].batch_shape) for s in samples] + [0])
    plates = -min([f.dim for s in samples for f in s["cond_indep_stack"] if f.vectorized] + [0])  # as Pyro counts
    return sites, discrete, max(batch, plates), plates


def plate_nesting(model_fn, args, kwargs=None) -> int:
    """Pyro's ``max_plate_nesting`` for the model (the leftmost plate dimension it uses),
    guessed as Pyro guesses it but with flat priors drawn as they start."""
    return latent_sites(model_fn, tuple(args), kwargs)[3]


def latent_names(sites: dict) -> list:
    """One name per latent element of ``sites`` (``{site: shape}``): ``"s"``, ``"w[0]"``,
    ``"L[0,1]"``."""
    names = []
    for site, shape in sites.items():
        if shape == ():
            names.append(site)
        else:
            names += (
                [f"{site}[{i}]" for i in range(math.prod(shape))]
                if len(shape) == 1
                else [
                    f"{site}[{','.join(map(str, idx))}]"
                    for idx in torch.cartesian_prod(*[torch.arange(d) for d in shape]).reshape(-1, len(shape)).tolist()
                ]
            )
    return names


__all__ = ["is_discrete", "latent_names", "latent_sites", "model_function", "plate_nesting", "prior_trace"]
