"""Uncertainty from posterior samples: classification entropy split into aleatoric and
epistemic parts, and the law of total variance for regression."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._validate import check_tensor


@dataclass
class Uncertainty:
    """Per-input uncertainty: ``total = aleatoric + epistemic`` (up to rounding).

    For classification these are in nats: predictive entropy, expected entropy and mutual
    information. For regression they are variances: ``Var[y]``, ``E[sigma^2]`` and
    ``Var[mu]``.
    """

    total: torch.Tensor
    aleatoric: torch.Tensor
    epistemic: torch.Tensor


def _entropy(probs):
    return -(probs * probs.clamp_min(torch.finfo(probs.dtype).tiny).log()).sum(-1)


def _check_samples(samples, name, dims):
    check_tensor(samples, name)
    if samples.dim() != dims:
        raise ValueError(
            f"`{name}` must be posterior samples of shape {('(S, N, C)' if dims == 3 else '(S, N, ...)')}, "
            f"but got shape {tuple(samples.shape)}"
        )


def classification_uncertainty(prob_samples: torch.Tensor) -> Uncertainty:
    """Entropy of the predictive ``H[E_w p(y|x,w)]`` = expected entropy ``E_w H[p(y|x,w)]``
    (aleatoric) + mutual information between ``y`` and the weights (epistemic).

    :param prob_samples: ``(S, N, C)`` class probabilities under S posterior draws.
    :returns: :class:`Uncertainty` with ``(N,)`` tensors in nats.

    >>> certain = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # two draws disagree completely
    >>> u = classification_uncertainty(certain)
    >>> round(float(u.epistemic), 4), round(float(u.aleatoric), 4)
    (0.6931, 0.0)
    """
    _check_samples(prob_samples, "prob_samples", 3)
    total = _entropy(prob_samples.mean(0))
    aleatoric = _entropy(prob_samples).mean(0)
    return Uncertainty(total, aleatoric, (total - aleatoric).clamp_min(0.0))


def regression_uncertainty(mean_samples: torch.Tensor, scale_samples: torch.Tensor) -> Uncertainty:
    """Law of total variance: ``Var[y] = E_w[sigma^2(x,w)]`` (aleatoric) ``+ Var_w[mu(x,w)]``
    (epistemic), from a Normal likelihood's predicted mean and scale under S draws.

    :param mean_samples: ``(S, N, ...)`` predicted means.
    :param scale_samples: ``(S, N, ...)`` predicted standard deviations (same shape).
    """
    check_tensor(mean_samples, "mean_samples")
    check_tensor(scale_samples, "scale_samples")
    if mean_samples.dim() < 2 or scale_samples.shape != mean_samples.shape:
        raise ValueError(
            "`mean_samples` and `scale_samples` must both have shape (S, N, ...), but got "
            f"{tuple(mean_samples.shape)} and {tuple(scale_samples.shape)}"
        )
    aleatoric = scale_samples.pow(2).mean(0)
    epistemic = mean_samples.var(0, unbiased=False)
    return Uncertainty(aleatoric + epistemic, aleatoric, epistemic)
