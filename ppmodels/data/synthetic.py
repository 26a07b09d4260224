"""Small synthetic regression and classification problems (made by the code, seeded)."""

from __future__ import annotations

import torch

from .._validate import check_positive_int


def _generator(seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def linear_regression_data(num_train=100, num_test=100, num_features=2, correlation=0.95, noise=0.5, seed=0):
    """``y = x w + 0.2 + noise`` with features correlated pairwise by ``correlation`` (which makes
    the posterior over ``w`` correlated). Returns ``(x, y), (x_test, y_test)``."""
    check_positive_int(num_train, "num_train")
    check_positive_int(num_test, "num_test")
    d = check_positive_int(num_features, "num_features")
    if not -1.0 < correlation < 1.0:
        raise ValueError(f"`correlation` must be in (-1, 1), but got {correlation!r}")
    g = _generator(seed)
    cov = torch.full((d, d), float(correlation)) + (1 - correlation) * torch.eye(d)
    chol = torch.linalg.cholesky(cov)
    w = torch.linspace(1.0, -1.0, d)

    def draw(n):
        x = torch.randn(n, d, generator=g) @ chol.T
        return x, x @ w + 0.2 + noise * torch.randn(n, generator=g)

    return draw(num_train), draw(num_test)


def logistic_regression_data(num_train=200, num_test=200, num_features=3, seed=0):
    """Labels from ``Bernoulli(sigmoid(x w - 0.5))``. Returns ``(x, y), (x_test, y_test)``."""
    d = check_positive_int(num_features, "num_features")
    g = _generator(seed)
    w = torch.linspace(1.5, -1.0, d)

    def draw(n):
        x = torch.randn(check_positive_int(n, "n"), d, generator=g)
        return x, torch.bernoulli(torch.sigmoid(x @ w - 0.5), generator=g)

    return draw(num_train), draw(num_test)


def sine_regression_data(num_train=40, num_test=100, noise=0.1, seed=0):
    """``y = sin(3x) + noise`` with training inputs in [-1, -0.2] and [0.4, 1] (a gap where the
    posterior should widen) and test inputs over [-1.2, 1.2]. ``x`` has shape ``(N, 1)``."""
    g = _generator(seed)
    n = check_positive_int(num_train, "num_train")
    left = torch.rand(n // 2, generator=g) * 0.8 - 1.0
    right = torch.rand(n - n // 2, generator=g) * 0.6 + 0.4
    x = torch.cat([left, right]).unsqueeze(-1)
    xt = torch.linspace(-1.2, 1.2, check_positive_int(num_test, "num_test")).unsqueeze(-1)

    def f(v):
        return torch.sin(3 * v[:, 0])

    return (x, f(x) + noise * torch.randn(n, generator=g)), (xt, f(xt) + noise * torch.randn(len(xt), generator=g))


def mixture_data(num_train=8, num_test=50, locs=(-1.5, 1.5), noise=1.0, seed=0):
    """Draws from an equal two-component mixture with the given locations, for
    :class:`ppmodels.models.GaussianMixture` (few training points, so that its exact posterior
    over assignments sums over 2^N). Returns ``(x,), (x_test,)``."""
    n, m = check_positive_int(num_train, "num_train"), check_positive_int(num_test, "num_test")
    g = _generator(seed)
    centres = torch.tensor(locs, dtype=torch.float32)

    def draw(k):
        which = torch.randint(len(centres), (k,), generator=g)
        return centres[which] + noise * torch.randn(k, generator=g)

    return (draw(n),), (draw(m),)
