"""Small Bayesian models for checking variational inference against MCMC.

Each has ``model(x, y=None)`` with global latents and an observed site ``"y"`` in the
``"data"`` plate. :class:`BayesianLinearRegression` also gives its exact posterior.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from .._validate import check_positive_float, check_positive_int


def _linear(x, w, b):
    """x w + b. Under a vectorised particle plate Pyro gives global latents a singleton for the
    data plate, w: (P, 1, D) and b: (P, 1), so plain broadcasting gives (P, N)."""
    return (x * w).sum(-1) + b


def _check_xy(x, y, num_features):
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != num_features:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"`x` must have shape (N, {num_features}), but got {shape}")
    if y is not None and (not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],)):
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"`y` must have shape ({x.shape[0]},) to match `x`, but got {shape}")


class BayesianLinearRegression:
    r"""``w ~ N(0, prior_scale^2 I)``, ``b ~ N(0, prior_scale^2)``, ``y_i ~ N(x_i w + b, noise_scale^2)``.

    :param int num_features: dimension of ``x``.
    :param float prior_scale: prior standard deviation of the weights and bias.
    :param float noise_scale: the (known) observation noise.
    """

    def __init__(self, num_features: int, prior_scale: float = 1.0, noise_scale: float = 0.5):
        self.num_features = check_positive_int(num_features, "num_features")
        self.prior_scale = check_positive_float(prior_scale, "prior_scale")
        self.noise_scale = check_positive_float(noise_scale, "noise_scale")

    def model(self, x, y=None):
        _check_xy(x, y, self.num_features)
        w = pyro.sample("w", dist.Normal(x.new_zeros(self.num_features), self.prior_scale).to_event(1))
        b = pyro.sample("b", dist.Normal(x.new_zeros(()), self.prior_scale))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(_linear(x, w, b), self.noise_scale), obs=y)

    def exact_posterior(self, x, y) -> dict:
        """The exact Gaussian posterior over ``(w, b)``: ``{"names", "mean", "cov"}`` with
        latents flattened in the order ``w[0], ..., w[D-1], b``."""
        _check_xy(x, y, self.num_features)
        design = torch.cat([x, torch.ones_like(x[:, :1])], dim=1).double()
        precision = torch.eye(design.shape[1], dtype=torch.float64) / self.prior_scale**2
        precision = precision + design.T @ design / self.noise_scale**2
        cov = torch.linalg.inv(precision)
        mean = cov @ design.T @ y.double() / self.noise_scale**2
        names = [f"w[{i}]" for i in range(self.num_features)] + ["b"]
        return {"names": names, "mean": mean, "cov": cov}


class BayesianLogisticRegression:
    """``w ~ N(0, prior_scale^2 I)``, ``b ~ N(0, prior_scale^2)``, ``y_i ~ Bernoulli(sigmoid(x_i w + b))``."""

    def __init__(self, num_features: int, prior_scale: float = 1.0):
        self.num_features = check_positive_int(num_features, "num_features")
        self.prior_scale = check_positive_float(prior_scale, "prior_scale")

    def model(self, x, y=None):
        _check_xy(x, y, self.num_features)
        w = pyro.sample("w", dist.Normal(x.new_zeros(self.num_features), self.prior_scale).to_event(1))
        b = pyro.sample("b", dist.Normal(x.new_zeros(()), self.prior_scale))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Bernoulli(logits=_linear(x, w, b)), obs=y)


class BayesianMLPRegression:
    """A one-hidden-layer tanh network on 1-D inputs with Normal priors on every weight:
    ``y_i ~ N(f(x_i), noise_scale^2)``. ``x`` has shape ``(N, 1)``."""

    def __init__(self, hidden: int = 10, prior_scale: float = 1.0, noise_scale: float = 0.1):
        self.hidden = check_positive_int(hidden, "hidden")
        self.prior_scale = check_positive_float(prior_scale, "prior_scale")
        self.noise_scale = check_positive_float(noise_scale, "noise_scale")
        self.num_features = 1

    def _weights(self, x):
        h, s = self.hidden, self.prior_scale
        w1 = pyro.sample("w1", dist.Normal(x.new_zeros(h), s).to_event(1))
        b1 = pyro.sample("b1", dist.Normal(x.new_zeros(h), s).to_event(1))
        w2 = pyro.sample("w2", dist.Normal(x.new_zeros(h), s / h**0.5).to_event(1))
        b2 = pyro.sample("b2", dist.Normal(x.new_zeros(()), s))
        return w1, b1, w2, b2

    def mean(self, x, w1, b1, w2, b2):
        """f(x) for ``x`` of shape (N, 1); as in :func:`_linear`, vectorised weights carry a
        singleton for the data plate: w1, b1, w2: (P, 1, H), b2: (P, 1)."""
        hidden = torch.tanh(x * w1 + b1)  # (..., N, H)
        return (hidden * w2).sum(-1) + b2

    def model(self, x, y=None):
        _check_xy(x, y, 1)
        mean = self.mean(x, *self._weights(x))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(mean, self.noise_scale), obs=y)
