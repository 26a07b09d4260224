"""Pareto-smoothed importance sampling, the numerics: a generalized Pareto tail fitted to the
largest importance ratios, its shape ``k`` (k-hat), the smoothed weights, their effective
sample size and the moments they give (Vehtari, Simpson, Gelman, Yao, Gabry 2024).

Below :data:`GOOD` the importance-weighted estimates are reliable; below :data:`USABLE` usable
with care; above it the proposal misses mass the target has. The smoothing is written here,
in torch, rather than taken from ArviZ's ``psislw``: the weights come from Pyro traces as
torch tensors (on the model's device), and ArviZ is an optional extra;
``tests/test_psis.py`` checks both k-hat and the smoothed weights against ArviZ's to 1e-6.
"""

from __future__ import annotations

import math

import torch

#: k-hat's thresholds (Vehtari et al. 2024): reliable below GOOD, usable below USABLE
GOOD, USABLE = 0.5, 0.7


def _gpd_fit(x: torch.Tensor) -> tuple:
    """Shape ``k`` and scale ``sigma`` of a generalized Pareto distribution for the ascending
    exceedances ``x``: Zhang and Stephens's (2009) posterior-mean estimate of ``theta = -k /
    sigma`` over a grid, then ``k`` pulled towards 0.5 by a weakly informative prior worth 10
    observations (as Vehtari et al. 2024)."""
    n = x.numel()
    m = 30 + int(math.sqrt(n))
    j = torch.arange(1, m + 1, dtype=x.dtype, device=x.device)
    quartile = x[int(n / 4 + 0.5) - 1]
    theta = 1 / x[-1] + (1 - torch.sqrt(m / (j - 0.5))) / (3 * quartile)
    k = torch.log1p(-theta[:, None] * x).mean(1)  # the shape for each theta
    profile = n * (torch.log(-theta / k) - k - 1)  # the profile log-likelihood
    weights = torch.softmax(profile, 0)
    theta_hat = (theta * weights).sum()
    k_hat = torch.log1p(-theta_hat * x).mean()
    sigma = -k_hat / theta_hat
    k_hat = (n * k_hat + 10 * 0.5) / (n + 10)
    return float(k_hat), float(sigma)


def _gpd_quantile(p: torch.Tensor, k: float, sigma: float) -> torch.Tensor:
    if abs(k) < 1e-12:
        return -sigma * torch.log1p(-p)
    return sigma * torch.expm1(-k * torch.log1p(-p)) / k


def pareto_smooth(log_weights, reff: float = 1.0) -> tuple:
    """Smooth the log importance weights along their last dimension.

    :param log_weights: ``(..., S)`` unnormalised log ratios.
    :param float reff: the draws' relative efficiency (1 for independent draws of ``q``).
    :returns: ``(smoothed, k_hat)``: normalised smoothed log weights ``(..., S)`` (float64)
        and k-hat ``(...)``; ``k_hat`` is ``inf`` where the tail has 4 draws or fewer.
    """
    lw = torch.as_tensor(log_weights).detach().to(torch.float64)
    if lw.dim() == 0 or lw.shape[-1] < 2:
        raise ValueError(
            f"`log_weights` must have at least 2 draws along its last dimension, but got shape {tuple(lw.shape)}"
        )
    flat = lw.reshape(-1, lw.shape[-1]).clone()
    ks = torch.empty(flat.shape[0], dtype=torch.float64)
    s = flat.shape[-1]
    tail_length = math.ceil(min(0.2 * s, 3 * math.sqrt(s / reff)))
    for row in range(flat.shape[0]):
        if not bool(torch.isfinite(flat[row]).any()):
            raise ValueError("`log_weights` has a row with no finite value")
        x = flat[row] - flat[row].max()
        ordered, _ = torch.sort(x)
        cutoff = max(float(ordered[-tail_length - 1]), math.log(torch.finfo(torch.float64).tiny))
        tail = torch.nonzero(x > cutoff).reshape(-1)
        k = math.inf
        if tail.numel() > 4:
            values, order = torch.sort(x[tail])
            k, sigma = _gpd_fit(values.exp() - math.exp(cutoff))
            if math.isfinite(k):
                levels = (torch.arange(tail.numel(), dtype=torch.float64) + 0.5) / tail.numel()
                x[tail[order]] = torch.log(_gpd_quantile(levels, k, sigma) + math.exp(cutoff)).clamp(max=0.0)
        flat[row] = x - torch.logsumexp(x, 0)
        ks[row] = k
    return flat.reshape(lw.shape), ks.reshape(lw.shape[:-1])


def effective_sample_size(smoothed) -> torch.Tensor:
    """``1 / sum(w^2)`` of normalised log weights along the last dimension."""
    return 1 / torch.exp(2 * torch.as_tensor(smoothed)).sum(-1)


def weighted_moments(draws: dict, log_weights: torch.Tensor) -> dict:
    """``{site: (mean, sd)}`` of ``draws`` under the normalised ``log_weights``."""
    w = log_weights.exp()
    out = {}
    for name, value in draws.items():
        v = value.detach().to(torch.float64)
        ww = w.reshape(-1, *([1] * (v.dim() - 1)))
        mean = (ww * v).sum(0)
        out[name] = (mean, ((ww * (v - mean) ** 2).sum(0)).sqrt())
    return out


__all__ = ["GOOD", "USABLE", "effective_sample_size", "pareto_smooth", "weighted_moments"]
