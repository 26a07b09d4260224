"""The posterior of a model's discrete latent sites after training, by enumeration."""

from __future__ import annotations

import pyro
import torch
from pyro import poutine
from pyro.infer import config_enumerate

from ..._random import seeded
from ..._validate import check_nonnegative_int, check_positive_int
from ..program.pairs import as_pair
from ..program.sites import is_discrete, plate_nesting
from ..training.data import as_args, call_arguments


@torch.no_grad()
def infer_discrete(
    pair=None,
    data=None,
    *,
    model=None,
    guide=None,
    temperature: int = 0,
    num_samples: int = 1,
    max_plate_nesting: int | None = None,
    seed: int | None = None,
) -> dict:
    """The discrete latent sites of a trained model, given the data: their MAP values
    (``temperature=0``) or draws from their posterior (``temperature=1``).

    The continuous latents are drawn from the guide; given them, each discrete site's
    posterior is exact (Pyro's ``infer_discrete`` by parallel enumeration, with the model's
    discrete sites marked for it), so a mixture's cluster assignments come out as
    ``infer_discrete((model, guide), data)["assignment"]``. Discrete sites the guide samples
    are inferred the same way (the guide's continuous draws only are replayed).

    :param pair: the trained pair (as for :func:`fit`), or ``model=``/``guide=``.
    :param data: the model's arguments, as for :func:`fit` (a tensor, a tuple, a dict).
    :param int temperature: 0 for the MAP assignment, 1 for posterior samples.
    :param int num_samples: draws (each with a fresh guide draw); above 1, every value gains
        a leading dimension of this size.
    :param int max_plate_nesting: found from one trace of the model when not given.
    :returns: ``{site name: tensor}`` for every discrete latent site of the model.
    """
    pair = as_pair(pair, model, guide)
    if temperature not in (0, 1):
        raise ValueError(f"`temperature` must be 0 (MAP) or 1 (posterior samples), but got {temperature!r}")
    num_samples = check_positive_int(num_samples, "num_samples")
    batch = as_args(data) if data is not None else ()
    args, kwargs = call_arguments(batch)
    was_training = getattr(pair, "training", False)
    if isinstance(pair, torch.nn.Module):
        pair.eval()
    try:
        with seeded(seed):
            nesting = (
                plate_nesting(pair.model, args, kwargs)
                if max_plate_nesting is None
                else check_nonnegative_int(max_plate_nesting, "max_plate_nesting")
            )
            draws = []
            for _ in range(num_samples):
                guide_trace = poutine.trace(pair.guide).get_trace(*args, **kwargs)
                for name, site in list(guide_trace.nodes.items()):
                    if site["type"] == "sample" and is_discrete(site["fn"]):
                        guide_trace.remove_node(name)
                replayed = poutine.replay(pair.model, trace=guide_trace)
                inferred = pyro.infer.infer_discrete(
                    config_enumerate(replayed, "parallel"), temperature=temperature, first_available_dim=-1 - nesting
                )
                trace = poutine.trace(inferred).get_trace(*args, **kwargs)
                draws.append(
                    {
                        name: site["value"]
                        for name, site in trace.nodes.items()
                        if site["type"] == "sample" and not site["is_observed"] and is_discrete(site["fn"])
                    }
                )
    finally:
        if was_training:
            pair.train()
    if not draws[0]:
        raise ValueError("infer_discrete: the model has no discrete latent site")
    if num_samples == 1:
        return draws[0]
    return {name: torch.stack([d[name] for d in draws]) for name in draws[0]}
