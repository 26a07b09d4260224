"""Families of random functions for neural processes: Gaussian-process draws (RBF, Matern-5/2,
periodic kernels) with per-function hyperparameters, the seed's sine family, and
context/target batches."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._validate import check_choice, check_positive_float, check_positive_int

KERNELS = ("rbf", "matern", "periodic")


def kernel_matrix(kernel: str, x1, x2, lengthscale, scale, period: float = 1.0):
    """``k(x1, x2)`` for batches: ``x1`` (F, N, 1), ``x2`` (F, M, 1), ``lengthscale`` and
    ``scale`` (F,); returns (F, N, M)."""
    check_choice(kernel, "kernel", KERNELS)
    dist = (x1 - x2.transpose(-1, -2)).abs()
    ell, var = lengthscale[:, None, None], scale[:, None, None] ** 2
    if kernel == "rbf":
        return var * torch.exp(-0.5 * (dist / ell) ** 2)
    if kernel == "matern":
        r = math.sqrt(5.0) * dist / ell
        return var * (1 + r + r**2 / 3) * torch.exp(-r)
    return var * torch.exp(-2 * torch.sin(math.pi * dist / period) ** 2 / ell**2)


@dataclass
class FunctionData:
    """``num_functions`` functions observed at ``num_points`` inputs each.

    :ivar x: (F, P, 1) inputs.
    :ivar y: (F, P, 1) noisy observations.
    :ivar lengthscale: (F,) the lengthscale each was drawn with (``None`` for the sine family).
    :ivar scale: (F,) the signal sd each was drawn with (``None`` for the sine family).
    :ivar noise: the observation noise sd.
    """

    x: torch.Tensor
    y: torch.Tensor
    kernel: str
    lengthscale: torch.Tensor | None
    scale: torch.Tensor | None
    noise: float

    def __len__(self):
        return self.x.shape[0]

    def gp_predictive(self, index, x_context, y_context, x_target):
        """The exact GP predictive at ``x_target`` for function(s) ``index`` (a tensor of
        indices) given their context, with the true hyperparameters (the oracle): mean (F, T),
        covariance (F, T, T) of the noisy targets."""
        if self.lengthscale is None:
            raise ValueError("the sine family has no GP oracle")
        ell, s = self.lengthscale[index].double(), self.scale[index].double()
        xc, yc, xt = x_context.double(), y_context.double(), x_target.double()
        eye_c = torch.eye(xc.shape[1], dtype=torch.float64)
        k_cc = kernel_matrix(self.kernel, xc, xc, ell, s) + self.noise**2 * eye_c
        k_tc = kernel_matrix(self.kernel, xt, xc, ell, s)
        k_tt = kernel_matrix(self.kernel, xt, xt, ell, s)
        chol = torch.linalg.cholesky(k_cc)
        solved = torch.cholesky_solve(torch.cat([yc, k_tc.transpose(-1, -2)], dim=-1), chol)
        mean = (k_tc @ solved[..., :1]).squeeze(-1)
        cov = k_tt - k_tc @ solved[..., 1:] + self.noise**2 * torch.eye(xt.shape[1], dtype=torch.float64)
        return mean, cov


def gp_functions(
    kernel: str = "rbf",
    num_functions: int = 1000,
    num_points: int = 100,
    lengthscale=(0.1, 0.6),
    scale=(0.1, 1.0),
    noise: float = 0.02,
    x_range=(-2.0, 2.0),
    seed: int = 0,
) -> FunctionData:
    """Draws from a GP prior with hyperparameters drawn per function, uniform on
    ``lengthscale`` and ``scale`` ranges, observed with Normal noise ``noise`` at
    ``num_points`` inputs drawn uniformly on ``x_range`` (sorted).

    >>> data = gp_functions("matern", num_functions=4, num_points=10, seed=1)
    >>> data.x.shape, data.y.shape
    (torch.Size([4, 10, 1]), torch.Size([4, 10, 1]))
    """
    check_choice(kernel, "kernel", KERNELS)
    f = check_positive_int(num_functions, "num_functions")
    p = check_positive_int(num_points, "num_points")
    noise = check_positive_float(noise, "noise")
    g = torch.Generator().manual_seed(seed)
    lo, hi = x_range
    x = (torch.rand(f, p, 1, generator=g, dtype=torch.float64) * (hi - lo) + lo).sort(dim=1).values
    ell = torch.rand(f, generator=g, dtype=torch.float64) * (lengthscale[1] - lengthscale[0]) + lengthscale[0]
    s = torch.rand(f, generator=g, dtype=torch.float64) * (scale[1] - scale[0]) + scale[0]
    cov = kernel_matrix(kernel, x, x, ell, s) + (noise**2 + 1e-8) * torch.eye(p, dtype=torch.float64)
    y = torch.linalg.cholesky(cov) @ torch.randn(f, p, 1, generator=g, dtype=torch.float64)
    return FunctionData(x.float(), y.float(), kernel, ell.float(), s.float(), noise)


def sine_functions(num_functions=1000, num_points=100, x_range=(-2.0, 2.0), noise=0.02, seed=0) -> FunctionData:
    """The seed's family: ``a sin(x - b)`` with ``a`` uniform on [0.5, 1.5] and ``b`` on
    [-1, 1], observed with noise."""
    f, p = check_positive_int(num_functions, "num_functions"), check_positive_int(num_points, "num_points")
    g = torch.Generator().manual_seed(seed)
    lo, hi = x_range
    x = (torch.rand(f, p, 1, generator=g) * (hi - lo) + lo).sort(dim=1).values
    a = torch.rand(f, 1, 1, generator=g) + 0.5
    b = torch.rand(f, 1, 1, generator=g) * 2 - 1
    y = a * torch.sin(x - b) + noise * torch.randn(f, p, 1, generator=g)
    return FunctionData(x, y, "sine", None, None, float(noise))


class ContextTargetBatches:
    """Batches ``(x_context, y_context, x_target, y_target)`` of ``batch_size`` functions: the
    targets are all the points, the context a random subset of ``min_context`` to
    ``max_context`` of them (one size per batch). Re-iterable; reshuffles every pass.

    :param regenerate: a callable ``seed -> FunctionData`` (e.g.
        ``lambda s: gp_functions("rbf", 8000, 50, seed=s)``): every pass after the first
        draws fresh functions from it, so the model never sees a function twice (the usual
        neural-process regime; a fixed set of functions can be memorised).
    """

    def __init__(self, data: FunctionData, batch_size=16, min_context=3, max_context=50, seed=0, regenerate=None):
        if regenerate is not None and not callable(regenerate):
            raise TypeError(
                f"`regenerate` must be a callable seed -> FunctionData, but got {type(regenerate).__name__}"
            )
        self.regenerate, self.passes, self.seed = regenerate, 0, seed
        self.data = data
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.min_context = check_positive_int(min_context, "min_context")
        self.max_context = check_positive_int(max_context, "max_context")
        if self.min_context > self.max_context or self.max_context > data.x.shape[1]:
            raise ValueError(
                f"`min_context` ({min_context}) <= `max_context` ({max_context}) <= points per function "
                f"({data.x.shape[1]}) is required"
            )
        self.generator = torch.Generator().manual_seed(seed)
        self.num_data = len(data)

    def __len__(self):
        return math.ceil(len(self.data) / self.batch_size)

    def __iter__(self):
        if self.regenerate is not None and self.passes > 0:
            fresh = self.regenerate(self.seed + 7919 * self.passes)
            if fresh.x.shape[1:] != self.data.x.shape[1:]:
                raise ValueError(f"`regenerate` changed the shape of the functions: {tuple(fresh.x.shape)}")
            self.data = fresh
        self.passes += 1
        order = torch.randperm(len(self.data), generator=self.generator)
        points = self.data.x.shape[1]
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            n = int(torch.randint(self.min_context, self.max_context + 1, (), generator=self.generator))
            pick = torch.rand(len(index), points, generator=self.generator).argsort(dim=1)[:, :n, None]
            x, y = self.data.x[index], self.data.y[index]
            yield x.gather(1, pick), y.gather(1, pick), x, y

    def state_dict(self):
        """The shuffling and context draws' generator and the passes done, for exact resume
        (each pass after the first draws its functions afresh from ``regenerate``)."""
        return {"generator": self.generator.get_state(), "passes": self.passes}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])
        self.passes = int(state["passes"])
