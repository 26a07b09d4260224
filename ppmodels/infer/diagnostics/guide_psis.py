"""Pareto-smoothed importance sampling: did the variational posterior work?

For draws ``z ~ q`` the importance ratios ``p(x, z) / q(z)`` say how far ``q`` is from the
posterior. Their largest values follow a generalized Pareto tail whose shape ``k`` (k-hat)
measures it (Yao, Vehtari, Simpson, Gelman 2018; Vehtari et al. 2024): below 0.5 the
importance-weighted estimates are reliable and ``q`` is close; 0.5-0.7 usable with care;
above 0.7 ``q`` misses mass the posterior has (too narrow, wrong shape), and neither ``q``
nor its reweighting should be trusted. Replacing the ``M`` largest ratios by the fitted
tail's expected order statistics (Pareto smoothing) gives weights whose moments correct
``q``'s where ``k`` is small.

The smoothing itself is :mod:`~ppmodels.infer.diagnostics.pareto`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..._validate import check_positive_int
from ..program.sites import latent_sites
from .pareto import GOOD, USABLE, effective_sample_size, pareto_smooth, weighted_moments


@dataclass
class PSISResult:
    """PSIS of a guide against its model's posterior.

    :ivar k_hat: the Pareto shape (see the thresholds :data:`GOOD`, :data:`USABLE`).
    :ivar log_weights: the normalised smoothed log weights of the draws, ``(S,)``.
    :ivar ess: their effective sample size.
    :ivar draws: the guide's draws ``{site: (S, *shape)}``.
    :ivar moments: PSIS-corrected ``{site: (mean, sd)}`` (elementwise).
    :ivar raw_log_weights: the draws' unsmoothed ``log p(x, z) - log q(z)``, ``(S,)``.
    """

    k_hat: float
    log_weights: torch.Tensor
    ess: float
    draws: dict
    moments: dict
    raw_log_weights: torch.Tensor | None = None

    @property
    def verdict(self) -> str:
        if self.k_hat < GOOD:
            return f"k-hat {self.k_hat:.2f} < {GOOD}: the guide is close to the posterior; PSIS estimates are reliable"
        if self.k_hat < USABLE:
            return f"k-hat {self.k_hat:.2f} in [{GOOD}, {USABLE}): usable, PSIS-corrected estimates preferred"
        return (
            f"k-hat {self.k_hat:.2f} >= {USABLE}: the guide misses posterior mass (too narrow or the wrong shape); "
            "neither it nor its reweighting is reliable"
        )


@dataclass
class PerDatumPSIS:
    """PSIS of an amortised guide per datum (:func:`~ppmodels.infer.diagnostics.evaluate.psis_per_datum`).

    :ivar k_hat: ``(N,)`` each datum's Pareto k.
    :ivar log_likelihood: ``(N,)`` each datum's importance-weighted log-likelihood estimate.
    :ivar num_samples: the draws per datum.
    """

    k_hat: torch.Tensor
    log_likelihood: torch.Tensor
    num_samples: int

    def summary(self) -> dict:
        """The k-hats' median, 90th percentile and maximum, and the fractions of data at or
        above 0.5 and 0.7 (``None`` where too few draws gave no k)."""
        k = self.k_hat.double()
        if not bool(torch.isfinite(k).all()):
            return {
                "k_hat_median": None,
                "k_hat_p90": None,
                "k_hat_max": None,
                "k_hat_above_0.5": None,
                "k_hat_above_0.7": None,
                "k_hat_draws": self.num_samples,
            }
        return {
            "k_hat_median": float(k.median()),
            "k_hat_p90": float(k.quantile(0.9)),
            "k_hat_max": float(k.max()),
            "k_hat_above_0.5": float((k >= GOOD).double().mean()),
            "k_hat_above_0.7": float((k >= USABLE).double().mean()),
            "k_hat_draws": self.num_samples,
        }


def _one_weight(model, guide, args, kwargs) -> tuple:
    """``log p(x, z) - log q(z)`` of one draw of the guide, and the guide's trace."""
    from pyro import poutine

    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    return model_trace.log_prob_sum() - guide_trace.log_prob_sum(), guide_trace


def psis(model, guide, *args, num_samples: int = 1000, chunk: int = 1000, **kwargs) -> PSISResult:
    """PSIS of ``guide`` against ``model``'s posterior given ``model(*args, **kwargs)``'s data.

    Any guide that samples every latent site of the model: a ``pyro.param`` guide, an
    autoguide, a guide with a network, a trained pair's guide. Draws are taken
    ``chunk`` at a time, vectorised under a plate left of the model's plates (one at a time
    for a guide that does not broadcast), so memory stays bounded however many are asked for.

        >>> result = psis(model, guide, x, y, num_samples=4000)     # doctest: +SKIP
        >>> result.k_hat, result.moments["beta"]                     # doctest: +SKIP

    :returns: :class:`PSISResult`: k-hat, the smoothed log weights, their effective sample
        size and the PSIS-corrected moments of each latent site.
    """
    from pyro import poutine
    from pyro.infer.importance import vectorized_importance_weights

    if not callable(model):
        raise TypeError(f"`model` must be a callable Pyro model, but got {type(model).__name__}")
    if not callable(guide):
        raise TypeError(
            f"`guide` must be a callable Pyro guide (PSIS weighs a guide's draws against the model), but got "
            f"{type(guide).__name__}"
        )
    num_samples = check_positive_int(num_samples, "num_samples")
    chunk = check_positive_int(chunk, "chunk")
    sites, discrete, nesting, _ = latent_sites(model, args, kwargs)
    if discrete:
        raise ValueError(
            f"psis needs the guide to sample every latent site; the model's discrete sites {sorted(discrete)} are "
            "summed out by enumeration, not sampled"
        )
    with torch.no_grad(), poutine.block():
        sampled = poutine.trace(guide).get_trace(*args, **kwargs).stochastic_nodes
    missing = [name for name in sites if name not in sampled]
    if missing:
        raise ValueError(
            f"the guide does not sample the model's latent site {missing[0]!r} (PSIS needs a guide over every latent "
            f"site; it samples {sorted(sampled)})"
        )
    # the results are allocated once at full size and filled chunk by chunk: small tensors kept
    # from every chunk, between its large freed temporaries, fragment the heap
    # (benchmarks/psis_memory.py measures the resident memory)
    raw, draws = None, {}
    done, size = 0, chunk
    with torch.no_grad():
        while done < num_samples:
            n = min(size, num_samples - done)
            if size == 0:  # a guide that does not broadcast: one draw at a time, without a plate
                n = 1
                lw, guide_trace = _one_weight(model, guide, args, kwargs)
            else:
                try:
                    lw, _, guide_trace = vectorized_importance_weights(
                        model, guide, *args, num_samples=n, max_plate_nesting=nesting + 1, normalized=False, **kwargs
                    )
                except (RuntimeError, ValueError, IndexError):
                    size = 0
                    continue
            if raw is None:
                raw = lw.new_empty(num_samples)
                for name, shape in sites.items():
                    value = guide_trace.nodes[name]["value"]
                    draws[name] = value.new_empty(num_samples, *shape)
            raw[done : done + n] = lw.reshape(n)
            for name, shape in sites.items():
                draws[name][done : done + n] = guide_trace.nodes[name]["value"].reshape(n, *shape)
            del guide_trace, lw
            done += n
    smoothed, k_hat = pareto_smooth(raw)
    return PSISResult(
        float(k_hat), smoothed, float(effective_sample_size(smoothed)), draws, weighted_moments(draws, smoothed), raw
    )


__all__ = ["PSISResult", "PerDatumPSIS", "psis"]
