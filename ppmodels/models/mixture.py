"""A small Gaussian mixture whose exact posterior is computed by brute force, for checking VI
and MCMC on discrete latents."""

from __future__ import annotations

import itertools

import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex

from .._validate import check_positive_float

#: brute force sums over K^N assignments: refuse data sets where that is too many
MAX_ASSIGNMENTS = 2**16


class GaussianMixture:
    r"""``locs_k ~ N(prior_means_k, prior_scale^2)``, ``assignment_i ~ Categorical(weights)``,
    ``x_i ~ N(locs[assignment_i], noise_scale^2)`` with known weights and noise.

    The prior means differ, so the posterior has one dominant mode (no label switching), and
    given the assignments everything is conjugate: :meth:`exact_posterior` and
    :meth:`exact_discrete` sum over all K^N assignments.

    :param prior_means: one prior mean per component (default ``(-2, 2)``).
    :param float prior_scale: prior sd of the locations.
    :param float noise_scale: the (known) sd of each component.
    :param weights: the (known) mixture weights (default uniform).
    """

    def __init__(self, prior_means=(-2.0, 2.0), prior_scale: float = 2.0, noise_scale: float = 1.0, weights=None):
        self.prior_means = torch.as_tensor(prior_means, dtype=torch.float32)
        if self.prior_means.dim() != 1 or len(self.prior_means) < 2:
            raise ValueError(f"`prior_means` must list at least two components, but got {prior_means!r}")
        k = len(self.prior_means)
        self.prior_scale = check_positive_float(prior_scale, "prior_scale")
        self.noise_scale = check_positive_float(noise_scale, "noise_scale")
        self.weights = torch.full((k,), 1.0 / k) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        if self.weights.shape != (k,) or bool((self.weights <= 0).any()) or abs(float(self.weights.sum()) - 1) > 1e-5:
            raise ValueError(f"`weights` must be {k} positive numbers summing to 1, but got {weights!r}")

    def model(self, x):
        if not isinstance(x, torch.Tensor) or x.dim() != 1:
            raise ValueError(f"`x` must be a tensor of shape (N,), but got {getattr(x, 'shape', type(x).__name__)}")
        locs = pyro.sample("locs", dist.Normal(self.prior_means, self.prior_scale).to_event(1))
        with pyro.plate("data", len(x)):
            assignment = pyro.sample("assignment", dist.Categorical(self.weights))
            pyro.sample("obs", dist.Normal(Vindex(locs)[..., assignment], self.noise_scale), obs=x)

    def _assignments(self, x):
        n, k = len(x), len(self.prior_means)
        if k**n > MAX_ASSIGNMENTS:
            raise ValueError(f"the exact posterior sums over {k}^{n} assignments; use at most {MAX_ASSIGNMENTS}")
        x = x.double()
        mu, tau2, s2 = self.prior_means.double(), self.prior_scale**2, self.noise_scale**2
        log_w = self.weights.double().log()
        rows = []
        for a in itertools.product(range(k), repeat=n):
            a = torch.tensor(a)
            lp = log_w[a].sum()
            means, variances = [], []
            for c in range(k):
                xs = x[a == c]
                m = len(xs)
                if m:  # the component's points jointly: N(mu 1, s2 I + tau2 1 1^T)
                    cov = s2 * torch.eye(m, dtype=torch.float64) + tau2
                    lp = lp + torch.distributions.MultivariateNormal(mu[c].expand(m), cov).log_prob(xs)
                precision = 1 / tau2 + m / s2
                means.append((mu[c] / tau2 + xs.sum() / s2) / precision)
                variances.append(1 / precision)
            rows.append((a, lp, torch.stack(means), torch.tensor(variances, dtype=torch.float64)))
        log_post = torch.stack([r[1] for r in rows])
        return rows, (log_post - torch.logsumexp(log_post, 0)).exp()

    def exact_posterior(self, x) -> dict:
        """The exact mean and covariance of ``locs`` (a mixture over assignments of conjugate
        Normal posteriors): ``{"names", "mean", "cov"}``."""
        rows, weights = self._assignments(x)
        means = torch.stack([r[2] for r in rows])
        variances = torch.stack([r[3] for r in rows])
        mean = (weights[:, None] * means).sum(0)
        second = (weights[:, None, None] * (torch.diag_embed(variances) + means[:, :, None] * means[:, None, :])).sum(0)
        return {"names": [f"locs[{i}]" for i in range(len(mean))], "mean": mean, "cov": second - mean.outer(mean)}

    def exact_discrete(self, x) -> dict:
        """``{"assignment": P(assignment_i = k | x)}``, shape ``(N, K)``."""
        rows, weights = self._assignments(x)
        k = len(self.prior_means)
        probs = torch.zeros(len(x), k, dtype=torch.float64)
        for (a, *_), w in zip(rows, weights):
            probs[torch.arange(len(x)), a] += w
        return {"assignment": probs.float()}
