from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .._validate import check_choice, check_positive_int

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}
SCALE_PARAMETERIZATIONS = ("softplus", "log_var")


def activation(name: str) -> nn.Module:
    return ACTIVATIONS[check_choice(name, "activation", sorted(ACTIVATIONS))]()


def check_shape(shape, name: str) -> tuple:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not shape:
        raise TypeError(f"`{name}` must be a non-empty tuple of positive ints, but got {shape!r}")
    for d in shape:
        check_positive_int(d, name)
    return tuple(int(d) for d in shape)


def check_dims(dims, name: str) -> tuple:
    if not isinstance(dims, (tuple, list)):
        raise TypeError(f"`{name}` must be a tuple of positive ints, but got {dims!r}")
    for d in dims:
        check_positive_int(d, name)
    return tuple(int(d) for d in dims)


def mlp(in_dim: int, hidden_dims: tuple, act: str) -> tuple:
    layers, width = [], in_dim
    for h in hidden_dims:
        layers += [nn.Linear(width, h), activation(act)]
        width = h
    return nn.Sequential(*layers), width


class GaussianHead(nn.Module):
    """Maps features to the location and scale of a diagonal Normal.

    :param int in_features: width of the features.
    :param int latent_dim: dimension of the Normal.
    :param str parameterization: ``"softplus"`` (scale = softplus(raw) + 1e-5, the default,
        numerically tame) or ``"log_var"`` (scale = exp(raw / 2), as MindSpore's VAE does).
    Returns ``(loc, scale)``, each ``(..., latent_dim)``.
    """

    def __init__(self, in_features: int, latent_dim: int, parameterization: str = "softplus"):
        super().__init__()
        self.parameterization = check_choice(parameterization, "parameterization", SCALE_PARAMETERIZATIONS)
        self.loc = nn.Linear(
            check_positive_int(in_features, "in_features"), check_positive_int(latent_dim, "latent_dim")
        )
        self.raw_scale = nn.Linear(in_features, latent_dim)

    def forward(self, h: torch.Tensor):
        raw = self.raw_scale(h)
        if self.parameterization == "softplus":
            scale = F.softplus(raw) + 1e-5
        else:
            scale = torch.exp(0.5 * raw)
        return self.loc(h), scale


def flatten_cond(x: torch.Tensor, data_dims: int, cond, cond_dim: int, who: str) -> torch.Tensor:
    """Flatten the trailing ``data_dims`` of ``x`` and append the condition if any."""
    h = x.reshape(*x.shape[: x.dim() - data_dims], -1)
    return append_cond(h, cond, cond_dim, who)


def append_cond(h: torch.Tensor, cond, cond_dim: int, who: str) -> torch.Tensor:
    if cond_dim == 0:
        if cond is not None:
            raise ValueError(f"{who} was built with cond_dim=0 but received a condition; build it with cond_dim=")
        return h
    if cond is None:
        raise ValueError(f"{who} was built with cond_dim={cond_dim} and needs a condition tensor")
    if cond.shape[-1] != cond_dim:
        raise ValueError(f"{who}: condition must have last dimension {cond_dim}, got shape {tuple(cond.shape)}")
    cond = cond.to(h.dtype).expand(*h.shape[:-1], cond_dim)
    return torch.cat([h, cond], dim=-1)


def numel(shape) -> int:
    return int(math.prod(shape))
