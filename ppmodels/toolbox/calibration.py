"""Calibration of predictive distributions, from posterior samples or probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._validate import check_positive_int, check_tensor


def _probs(probs, y, name="probs"):
    """Mean class probabilities ``(N, C)`` from ``(N, C)`` or posterior samples ``(S, N, C)``."""
    check_tensor(probs, name)
    check_tensor(y, "y")
    if probs.dim() == 3:
        probs = probs.mean(0)
    if probs.dim() != 2:
        raise ValueError(f"`{name}` must have shape (N, C) or (S, N, C), but got {tuple(probs.shape)}")
    if y.shape != probs.shape[:1]:
        raise ValueError(f"`y` must have shape ({probs.shape[0]},) to match `{name}`, but got {tuple(y.shape)}")
    if y.is_floating_point() or (len(y) and (int(y.min()) < 0 or int(y.max()) >= probs.shape[1])):
        raise ValueError(f"`y` must hold class indices in [0, {probs.shape[1]}), but got {y.dtype} values")
    return probs


def negative_log_likelihood(probs: torch.Tensor, y: torch.Tensor) -> float:
    """Mean ``-log p(y|x)`` of the (posterior-averaged) predictive, in nats."""
    p = _probs(probs, y)
    return float(-p.gather(1, y[:, None]).clamp_min(torch.finfo(p.dtype).tiny).log().mean())


def brier_score(probs: torch.Tensor, y: torch.Tensor) -> float:
    """Mean squared distance between the predictive probabilities and the one-hot label,
    summed over classes (0 is perfect, 2 the worst)."""
    p = _probs(probs, y)
    return float((p - torch.nn.functional.one_hot(y, p.shape[1]).to(p.dtype)).pow(2).sum(1).mean())


@dataclass
class Reliability:
    """Per confidence bin (equal widths on [0, 1]): edges, mean confidence, accuracy and
    count; empty bins hold ``nan``."""

    edges: torch.Tensor
    confidence: torch.Tensor
    accuracy: torch.Tensor
    count: torch.Tensor

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean |accuracy - confidence|."""
        used = self.count > 0
        weights = self.count[used].double() / self.count.sum()
        return float((weights * (self.accuracy[used] - self.confidence[used]).abs()).sum())


def reliability(probs: torch.Tensor, y: torch.Tensor, num_bins: int = 15) -> Reliability:
    """Bin the top-class confidence into ``num_bins`` equal-width bins on (0, 1]."""
    p = _probs(probs, y)
    num_bins = check_positive_int(num_bins, "num_bins")
    confidence, predicted = p.max(1)
    correct = (predicted == y).double()
    index = (confidence.double() * num_bins).ceil().long().clamp(1, num_bins) - 1
    count = torch.bincount(index, minlength=num_bins)
    conf_sum = torch.bincount(index, weights=confidence.double(), minlength=num_bins)
    acc_sum = torch.bincount(index, weights=correct, minlength=num_bins)
    nan = torch.full((num_bins,), float("nan"), dtype=torch.float64, device=p.device)
    used = count > 0
    return Reliability(
        torch.linspace(0, 1, num_bins + 1),
        torch.where(used, conf_sum / count.clamp_min(1), nan),
        torch.where(used, acc_sum / count.clamp_min(1), nan),
        count,
    )


def expected_calibration_error(probs: torch.Tensor, y: torch.Tensor, num_bins: int = 15) -> float:
    """ECE with ``num_bins`` equal-width confidence bins (Guo et al. 2017).

    >>> expected_calibration_error(torch.tensor([[0.8, 0.2], [0.8, 0.2]]), torch.tensor([0, 1]))
    0.30000001192092896
    """
    return reliability(probs, y, num_bins).ece


def accuracy(probs: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of inputs whose most probable class is the label."""
    return float((_probs(probs, y).argmax(1) == y).double().mean())


def mixture_quantile(mean_samples, scale_samples, q: float, iterations: int = 60) -> torch.Tensor:
    """Quantile ``q`` of the equally weighted Normal mixture ``(1/S) sum_s N(mean_s, scale_s)``
    over the first dimension, by bisection on its CDF (exact up to float precision)."""
    normal = torch.distributions.Normal(mean_samples, scale_samples, validate_args=False)
    spread = 10 * scale_samples.max(0).values
    lo, hi = mean_samples.min(0).values - spread, mean_samples.max(0).values + spread
    for _ in range(iterations):
        mid = (lo + hi) / 2
        below = normal.cdf(mid.unsqueeze(0).expand_as(mean_samples)).mean(0) < q
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return (lo + hi) / 2


def interval_coverage(mean_samples, scale_samples, y, level: float = 0.9) -> torch.Tensor:
    """Whether each ``y`` falls in the central ``level`` interval of the predictive (the Normal
    mixture over S posterior draws): a boolean tensor shaped like ``y``; its mean is the
    coverage.

    :param mean_samples: ``(S, ...)`` predicted means.
    :param scale_samples: predicted standard deviations, the same shape.
    :param y: the observations.
    """
    for value, name in ((mean_samples, "mean_samples"), (scale_samples, "scale_samples"), (y, "y")):
        check_tensor(value, name)
    if scale_samples.shape != mean_samples.shape or tuple(mean_samples.shape[1:]) != tuple(y.shape):
        raise ValueError(
            "`mean_samples` and `scale_samples` must have shape (S, *y.shape), but got "
            f"{tuple(mean_samples.shape)}, {tuple(scale_samples.shape)} and y {tuple(y.shape)}"
        )
    if not 0 < level < 1:
        raise ValueError(f"`level` must be in (0, 1), but got {level}")
    tail = (1 - level) / 2
    lo = mixture_quantile(mean_samples, scale_samples, tail)
    hi = mixture_quantile(mean_samples, scale_samples, 1 - tail)
    return (y >= lo) & (y <= hi)
