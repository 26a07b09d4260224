"""The latent neural process as a Pyro model/guide pair.

Each batch holds B functions with a context ``(x_c, y_c)`` and targets ``(x_t, y_t)`` (the
targets include the context). The model draws a function-level latent ``z`` from the
*conditional prior* ``q(z | context)`` and scores the targets under ``p(y_t | x_t, z)``; the
guide draws ``z`` from ``q(z | targets)``. The ELBO is the neural process objective
``E_q[log p(y_t | x_t, z)] - KL(q(z | targets) || q(z | context))`` (Garnelo et al. 2018),
with the same encoder on both sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from .._random import seeded
from .._spec import recorded
from .._validate import check_positive_float, check_positive_int, check_tensor
from ._plate import DataSizeMixin


def _mlp(sizes):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _check_xy(x, y, name_x, name_y, x_dim, y_dim, finite=True):
    """Shapes always; finiteness when ``finite`` (the model skips it: ``fit`` checks the
    training data itself, and the check costs a pass over the tensors every step)."""
    check_tensor(x, name_x)
    if not x.is_floating_point():
        raise TypeError(f"`{name_x}` must hold floating-point values, but got dtype {x.dtype}; convert with .float()")
    if x.dim() != 3 or x.shape[-1] != x_dim:
        raise ValueError(f"`{name_x}` must have shape (functions, points, {x_dim}), but got {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError(f"`{name_x}` is empty (0 points); the neural process needs at least one context point")
    if finite and not bool(torch.isfinite(x).all()):
        raise ValueError(f"`{name_x}` holds NaN or infinite values")
    if y is not None:
        check_tensor(y, name_y)
        if y.shape != (*x.shape[:2], y_dim):
            raise ValueError(
                f"`{name_y}` must have shape {(*x.shape[:2], y_dim)} to match `{name_x}` {tuple(x.shape)}, "
                f"but got {tuple(y.shape)}"
            )
        if finite and not bool(torch.isfinite(y).all()):
            raise ValueError(f"`{name_y}` holds NaN or infinite values")


def _check_functions(x_context, x_target):
    if x_context.shape[0] != x_target.shape[0]:
        raise ValueError(
            f"the context and the targets must describe the same functions: `x_context` has {x_context.shape[0]} "
            f"functions (shape {tuple(x_context.shape)}) but `x_target` has {x_target.shape[0]} "
            f"(shape {tuple(x_target.shape)})"
        )


@dataclass
class FunctionPrediction:
    """Predictions at the targets.

    :ivar mean: (B, T, y_dim) the predictive mean.
    :ivar std: the predictive sd (law of total variance over the draws of z).
    :ivar mean_samples: (S, B, T, y_dim) the decoder's mean under each draw of z.
    :ivar scale_samples: (S, B, T, y_dim) the decoder's sd under each draw of z.
    """

    mean: torch.Tensor
    std: torch.Tensor
    mean_samples: torch.Tensor
    scale_samples: torch.Tensor


@recorded
class NeuralProcess(DataSizeMixin, nn.Module):
    """A latent neural process, optionally with a deterministic path.

    :param int x_dim: input size.
    :param int y_dim: output size.
    :param int hidden: width of every hidden layer.
    :param int latent_dim: size of ``z``.
    :param bool deterministic_path: also feed the decoder a deterministic context
        representation: mean-aggregated, or per target by attention.
    :param bool attention: the deterministic path attends from each target input to the
        context inputs (multi-head cross-attention; the attentive neural process, Kim et al.
        2019), so what the decoder sees depends on where the target is relative to the context.
    :param float min_scale: the decoder's smallest standard deviation.
    :param float min_latent_scale: the smallest standard deviation of ``q(z | ...)``, whose sd
        is ``min + (1 - min) sigmoid(.)``; 0 gives the seed's unbounded ``softplus(.)``.
    :param float fixed_scale: a fixed decoder standard deviation instead of a learned one
        (the seed uses 0.005; see ``docs/neural_processes.md`` for what that does).
    """

    def __init__(
        self,
        x_dim: int = 1,
        y_dim: int = 1,
        hidden: int = 128,
        latent_dim: int = 64,
        deterministic_path: bool = True,
        attention: bool = False,
        min_scale: float = 0.01,
        min_latent_scale: float = 0.1,
        fixed_scale: float | None = None,
    ):
        super().__init__()
        self.x_dim, self.y_dim = check_positive_int(x_dim, "x_dim"), check_positive_int(y_dim, "y_dim")
        hidden, self.latent_dim = check_positive_int(hidden, "hidden"), check_positive_int(latent_dim, "latent_dim")
        self.min_scale = check_positive_float(min_scale, "min_scale")
        if isinstance(min_latent_scale, bool) or not isinstance(min_latent_scale, (int, float)):
            raise TypeError(f"`min_latent_scale` must be a number in [0, 1), but got {min_latent_scale!r}")
        if not 0 <= min_latent_scale < 1:
            raise ValueError(f"`min_latent_scale` must be in [0, 1), but got {min_latent_scale}")
        self.min_latent_scale = float(min_latent_scale)
        self.fixed_scale = None if fixed_scale is None else check_positive_float(fixed_scale, "fixed_scale")
        self.latent_encoder = _mlp([x_dim + y_dim, hidden, hidden, hidden])
        self.latent_head = _mlp([hidden, hidden, 2 * latent_dim])
        if attention and not deterministic_path:
            raise ValueError("`attention` acts on the deterministic path: it needs deterministic_path=True")
        self.deterministic_encoder = _mlp([x_dim + y_dim, hidden, hidden, hidden]) if deterministic_path else None
        self.attention = nn.MultiheadAttention(hidden, 4, batch_first=True) if attention else None
        self.query = _mlp([x_dim, hidden, hidden]) if attention else None
        r_dim = hidden if deterministic_path else 0
        self.decoder = _mlp([x_dim + latent_dim + r_dim, hidden, hidden, 2 * y_dim])

    def latent(self, x, y):
        """``q(z | x, y)``: a mean-aggregated representation -> Normal with sd in
        ``[min_latent_scale, 1]``."""
        s = self.latent_encoder(torch.cat([x, y], dim=-1)).mean(dim=-2)
        loc, raw = self.latent_head(s).chunk(2, dim=-1)
        if self.min_latent_scale > 0:
            scale = self.min_latent_scale + (1 - self.min_latent_scale) * torch.sigmoid(raw)
        else:
            scale = F.softplus(raw) + 1e-6
        return dist.Normal(loc, scale).to_event(1)

    def _representation(self, x, y, x_target):
        """The deterministic path: (B, hidden) mean-aggregated, or (B, T, hidden) by attention."""
        if self.deterministic_encoder is None:
            return None
        values = self.deterministic_encoder(torch.cat([x, y], dim=-1))
        if self.attention is None:
            return values.mean(dim=-2)
        r, _ = self.attention(self.query(x_target), self.query(x), values, need_weights=False)
        return r

    def decode(self, x_target, z, r=None):
        """Mean and sd of ``p(y | x_target, z)``; ``z`` (..., B, latent) broadcast over points;
        ``r`` the deterministic path, (B, hidden) or per target (B, T, hidden)."""
        points = x_target.shape[-2]
        parts = [x_target.expand(*z.shape[:-1], points, self.x_dim), z.unsqueeze(-2).expand(*z.shape[:-1], points, -1)]
        if r is not None:
            r = r if r.dim() == x_target.dim() else r.unsqueeze(-2)
            parts.append(r.expand(*z.shape[:-1], points, r.shape[-1]))
        mean, raw = self.decoder(torch.cat(parts, dim=-1)).chunk(2, dim=-1)
        if self.fixed_scale is not None:
            return mean, torch.full_like(mean, self.fixed_scale)
        return mean, self.min_scale + (1 - self.min_scale) * F.softplus(raw)

    def model(self, x_context, y_context, x_target, y_target=None):
        _check_xy(x_context, y_context, "x_context", "y_context", self.x_dim, self.y_dim, finite=False)
        _check_xy(x_target, y_target, "x_target", "y_target", self.x_dim, self.y_dim, finite=False)
        _check_functions(x_context, x_target)
        prior = self.latent(x_context, y_context)
        r = self._representation(x_context, y_context, x_target)
        with self.data_plate(x_context, name="functions"):
            z = pyro.sample("z", prior)
            mean, scale = self.decode(x_target, z, r)
            return pyro.sample("y", dist.Normal(mean, scale).to_event(2), obs=y_target)

    def guide(self, x_context, y_context, x_target, y_target=None):
        with self.data_plate(x_context, name="functions"):
            q = self.latent(x_target, y_target) if y_target is not None else self.latent(x_context, y_context)
            pyro.sample("z", q)

    @torch.no_grad()
    def predict(self, x_context, y_context, x_target, num_samples: int = 100, seed=None) -> FunctionPrediction:
        """Predictive at ``x_target`` from ``num_samples`` draws of ``z ~ q(z | context)``."""
        _check_xy(x_context, y_context, "x_context", "y_context", self.x_dim, self.y_dim)
        _check_xy(x_target, None, "x_target", None, self.x_dim, self.y_dim)
        _check_functions(x_context, x_target)
        k = check_positive_int(num_samples, "num_samples")
        with seeded(seed, x_context.device):
            z = self.latent(x_context, y_context).sample((k,))
        mean, scale = self.decode(x_target, z, self._representation(x_context, y_context, x_target))
        total = scale.pow(2).mean(0) + mean.var(0, unbiased=False)
        return FunctionPrediction(mean.mean(0), total.sqrt(), mean, scale)

    @torch.no_grad()
    def log_likelihood(self, x_context, y_context, x_target, y_target, num_samples: int = 100, seed=None):
        """Importance-weighted ``log p(y_target | x_target, context)`` per function, in nats per
        target point, with the proposal ``q(z | context and targets)``:
        ``logmeanexp_k [log p(y_t | z_k) + log q(z_k | c) - log q(z_k | c, t)]``."""
        _check_xy(x_context, y_context, "x_context", "y_context", self.x_dim, self.y_dim)
        _check_xy(x_target, y_target, "x_target", "y_target", self.x_dim, self.y_dim)
        _check_functions(x_context, x_target)
        k = check_positive_int(num_samples, "num_samples")
        prior, proposal = self.latent(x_context, y_context), self.latent(x_target, y_target)
        with seeded(seed, x_context.device):
            z = proposal.sample((k,))
        mean, scale = self.decode(x_target, z, self._representation(x_context, y_context, x_target))
        log_lik = dist.Normal(mean, scale).log_prob(y_target).sum((-2, -1))
        log_w = log_lik + prior.log_prob(z) - proposal.log_prob(z)
        return (torch.logsumexp(log_w, 0) - math.log(k)) / x_target.shape[1]
