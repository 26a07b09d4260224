"""Fully connected encoders and decoders."""

from __future__ import annotations

import torch
from torch import nn

from .._spec import recorded
from .._validate import check_nonnegative_int, check_positive_int
from ._common import GaussianHead, append_cond, check_dims, check_shape, flatten_cond, mlp, numel


@recorded
class MLPEncoder(nn.Module):
    """``x -> (loc, scale)`` of q(z | x [, c]) through a fully connected network.

    :param input_shape: shape of one input, e.g. ``(1, 28, 28)`` or ``(784,)``.
    :param int latent_dim: dimension of z.
    :param hidden_dims: widths of the hidden layers.
    :param int cond_dim: width of a condition appended to the flattened input (CVAE), or 0.
    :param str activation: ``relu``, ``tanh``, ``elu``, ``softplus``, ``leaky_relu``, ``gelu``.
    :param str parameterization: scale parameterisation, see :class:`GaussianHead`.

    ``forward(x, c=None)``: ``x`` is ``(..., *input_shape)``, ``c`` is ``(..., cond_dim)``;
    returns ``loc`` and ``scale``, each ``(..., latent_dim)``.
    """

    def __init__(
        self,
        input_shape,
        latent_dim: int,
        hidden_dims=(400,),
        cond_dim: int = 0,
        activation: str = "relu",
        parameterization: str = "softplus",
    ):
        super().__init__()
        self.input_shape = check_shape(input_shape, "input_shape")
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.cond_dim = check_nonnegative_int(cond_dim, "cond_dim")
        self.body, width = mlp(
            numel(self.input_shape) + self.cond_dim, check_dims(hidden_dims, "hidden_dims"), activation
        )
        self.head = GaussianHead(width, self.latent_dim, parameterization)

    def forward(self, x: torch.Tensor, c=None):
        if tuple(x.shape[x.dim() - len(self.input_shape) :]) != self.input_shape:
            raise ValueError(
                f"MLPEncoder expects inputs of shape (..., {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
            )
        h = flatten_cond(x, len(self.input_shape), c, self.cond_dim, "MLPEncoder")
        return self.head(self.body(h))


@recorded
class MLPDecoder(nn.Module):
    """``z -> `` likelihood parameters of shape ``output_shape`` (logits or means).

    :param int latent_dim: dimension of z.
    :param output_shape: shape of one output, e.g. ``(1, 28, 28)``.
    :param hidden_dims: widths of the hidden layers.
    :param int cond_dim: width of a condition appended to z (CVAE), or 0.

    ``forward(z, c=None)``: ``z`` is ``(..., latent_dim)``; returns ``(..., *output_shape)``
    with no output activation.
    """

    def __init__(self, latent_dim: int, output_shape, hidden_dims=(400,), cond_dim: int = 0, activation: str = "relu"):
        super().__init__()
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.output_shape = check_shape(output_shape, "output_shape")
        self.cond_dim = check_nonnegative_int(cond_dim, "cond_dim")
        body, width = mlp(self.latent_dim + self.cond_dim, check_dims(hidden_dims, "hidden_dims"), activation)
        self.body = nn.Sequential(*body, nn.Linear(width, numel(self.output_shape)))

    def forward(self, z: torch.Tensor, c=None) -> torch.Tensor:
        h = append_cond(z, c, self.cond_dim, "MLPDecoder")
        return self.body(h).reshape(*z.shape[:-1], *self.output_shape)


@recorded
class MLPClassifier(nn.Module):
    """``x -> `` class logits through a fully connected network (e.g. q(y | x) of a
    semi-supervised VAE, or a supervised baseline).

    :param input_shape: shape of one input, e.g. ``(1, 8, 8)``.
    :param int num_classes: number of classes.
    :param hidden_dims: widths of the hidden layers.

    ``forward(x)``: ``x`` is ``(..., *input_shape)``; returns ``(..., num_classes)``.
    """

    def __init__(self, input_shape, num_classes: int, hidden_dims=(400,), activation: str = "relu"):
        super().__init__()
        self.input_shape = check_shape(input_shape, "input_shape")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        body, width = mlp(numel(self.input_shape), check_dims(hidden_dims, "hidden_dims"), activation)
        self.body = nn.Sequential(*body, nn.Linear(width, self.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[x.dim() - len(self.input_shape) :]) != self.input_shape:
            raise ValueError(
                f"MLPClassifier expects inputs of shape (..., {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
            )
        return self.body(x.reshape(*x.shape[: x.dim() - len(self.input_shape)], -1))
