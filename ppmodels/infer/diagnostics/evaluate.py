"""Evaluating a trained pair: the ELBO and the importance-weighted log-likelihood, per sample."""

from __future__ import annotations

import math

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites

from ..._random import seeded
from ..._validate import check_positive_int
from ..training.data import as_args, batch_size_of, call_arguments, is_constant, make_batches, to_device
from .guide_psis import PerDatumPSIS
from .pareto import pareto_smooth

#: at most this many (particle x datum) rows go through the networks at once
MAX_ROWS = 8192


def _repeatable(batch) -> bool:
    values = batch.values() if isinstance(batch, dict) else batch
    return all(isinstance(v, torch.Tensor) or is_constant(v) for v in values)


def _repeat(batch, k):
    def rep(t):
        return t.repeat(k, *([1] * (t.dim() - 1))) if isinstance(t, torch.Tensor) and t.dim() else t

    if isinstance(batch, dict):
        return {key: rep(v) for key, v in batch.items()}
    return tuple(rep(t) for t in batch)


def _per_datum(trace, plate, rows):
    total = None
    for name, site in trace.nodes.items():
        if site["type"] != "sample":
            continue
        frames = [f for f in site["cond_indep_stack"] if f.name == plate]
        if not frames:
            raise ValueError(
                f"site {name!r} is outside the {plate!r} plate: a per-sample log-likelihood needs every "
                "sample site inside the data plate (global latents, e.g. Bayesian weights, have no "
                "per-sample share). Pass plate= if your data plate has another name."
            )
        lp = site["unscaled_log_prob"]
        dim = frames[0].dim
        if lp.dim() < -dim or lp.shape[dim] != rows:
            raise ValueError(
                f"site {name!r}: its log-density of shape {tuple(lp.shape)} does not span the "
                f"{rows} rows of the {plate!r} plate"
            )
        lp = lp.movedim(dim, 0).reshape(rows, -1).sum(-1)
        total = lp if total is None else total + lp
    return total


@torch.no_grad()
def log_weights(pair, batch, num_samples: int = 1, plate: str = "data") -> torch.Tensor:
    """``log p(x_i, z_ik) - log q(z_ik | x_i)`` for ``k < num_samples`` draws from the guide.

    The batch is repeated ``num_samples`` times along its first dimension, so any pair whose
    networks handle a batch handles this; when an argument cannot be repeated (e.g. the
    deep Markov model's ``PackedSequence``), the draws are taken one pass at a time instead.
    Scaling by the plate (``num_data``) is undone.

    :returns: a tensor of shape ``(num_samples, B)``.
    """
    batch = as_args(batch)
    b = batch_size_of(batch)
    k = check_positive_int(num_samples, "num_samples")
    if k > 1 and not _repeatable(batch):
        return torch.cat([log_weights(pair, batch, 1, plate) for _ in range(k)])
    rep = _repeat(batch, k)
    args, kwargs = call_arguments(rep)
    guide_trace = poutine.trace(pair.guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(pair.model, trace=guide_trace)).get_trace(*args, **kwargs)
    guide_trace, model_trace = prune_subsample_sites(guide_trace), prune_subsample_sites(model_trace)
    model_trace.compute_log_prob()
    guide_trace.compute_log_prob()
    lw = _per_datum(model_trace, plate, k * b)
    lq = _per_datum(guide_trace, plate, k * b)
    if lq is not None:
        lw = lw - lq
    return lw.reshape(k, b)


def _per_sample(pair, data, num_samples, batch_size, seed, device, plate, reduce):
    k = check_positive_int(num_samples, "num_samples")
    whole = isinstance(data, (tuple, dict)) and not _repeatable(data)
    # arguments that cannot be sliced into batches (a PackedSequence) are evaluated whole
    batches = make_batches(data, None if whole else batch_size, shuffle=False, name="data", full_batch=whole)
    was_training = getattr(pair, "training", False)
    if isinstance(pair, torch.nn.Module):
        pair.eval()
    out = []
    try:
        with seeded(seed, device), pyro.validation_enabled(False):
            for batch in batches:
                batch = to_device(as_args(batch), device)
                b = batch_size_of(batch)
                chunk = max(1, MAX_ROWS // max(b, 1))
                parts = [log_weights(pair, batch, min(chunk, k - start), plate) for start in range(0, k, chunk)]
                out.append(reduce(torch.cat(parts, dim=0), k))
    finally:
        if was_training:
            pair.train()
    return torch.cat(out)


def elbo(
    pair,
    data,
    num_samples: int = 1,
    batch_size: int | None = 256,
    seed: int | None = None,
    device=None,
    plate: str = "data",
) -> torch.Tensor:
    """The ELBO of each sample, in nats, averaged over ``num_samples`` guide draws.

    :param data: as for :func:`fit` (tensors, a dataset, a loader, or batches).
    :returns: a tensor of shape ``(N,)``; ``.mean()`` is the usual per-sample ELBO.
    """
    return _per_sample(pair, data, num_samples, batch_size, seed, device, plate, lambda lw, k: lw.mean(dim=0))


def log_likelihood(
    pair,
    data,
    num_samples: int = 100,
    batch_size: int | None = 256,
    seed: int | None = None,
    device=None,
    plate: str = "data",
) -> torch.Tensor:
    r"""The importance-weighted estimate of :math:`\log p(x_i)` for each sample, in nats [1]:

    .. math:: \log \frac{1}{K} \sum_{k=1}^K \frac{p(x_i, z_k)}{q(z_k | x_i)}, \quad z_k \sim q(z | x_i)

    It is a lower bound in expectation that rises with ``num_samples`` (K) towards
    :math:`\log p(x_i)`.

    :returns: a tensor of shape ``(N,)``.

    References:

    [1] Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders, 2016.
    """
    return _per_sample(
        pair, data, num_samples, batch_size, seed, device, plate, lambda lw, k: torch.logsumexp(lw, dim=0) - math.log(k)
    )


def psis_per_datum(
    pair,
    data,
    num_samples: int = 100,
    batch_size: int | None = 256,
    seed: int | None = None,
    device=None,
    plate: str = "data",
) -> PerDatumPSIS:
    r"""PSIS of an amortised guide, one datum at a time: for each sample ``x_i``, the Pareto
    k-hat of the importance ratios :math:`p(x_i, z_k) / q(z_k | x_i)` over ``num_samples``
    draws (Yao et al. 2018), and the importance-weighted log-likelihood from the same draws
    (as :func:`log_likelihood`).

    k-hat below 0.7 for a datum says its encoder's posterior is close enough for the
    importance-weighted estimate to be trusted; the fraction above 0.7 says how often the
    encoder misses. Fewer than 25 draws leave too short a tail to fit: k-hat is ``inf``.

    :returns: :class:`~ppmodels.infer.diagnostics.guide_psis.PerDatumPSIS`.
    """
    k = check_positive_int(num_samples, "num_samples")
    if not (callable(getattr(pair, "model", None)) and callable(getattr(pair, "guide", None))):
        raise TypeError(
            f"`pair` must be a model/guide pair (with .model and .guide methods: PSIS weighs the guide's draws "
            f"against the model), but got {type(pair).__name__}"
        )

    def reduce(lw, k):
        _, k_hat = pareto_smooth(lw.T)
        return torch.stack([torch.logsumexp(lw, dim=0) - math.log(k), k_hat.to(lw)], dim=-1)

    both = _per_sample(pair, data, k, batch_size, seed, device, plate, reduce)
    return PerDatumPSIS(both[:, 1], both[:, 0], k)
