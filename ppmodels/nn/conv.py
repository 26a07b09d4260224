"""Convolutional encoders and decoders for square-ish images (H and W divisible by 4)."""

from __future__ import annotations

import torch
from torch import nn

from .._spec import recorded
from .._validate import check_nonnegative_int, check_positive_int
from ._common import GaussianHead, activation, append_cond, check_dims, check_shape


def _check_image_shape(shape, name):
    shape = check_shape(shape, name)
    if len(shape) != 3 or shape[1] % 4 or shape[2] % 4:
        raise ValueError(f"`{name}` must be (C, H, W) with H and W divisible by 4, but got {shape}")
    return shape


@recorded
class ConvEncoder(nn.Module):
    """Two stride-2 convolutions, a dense layer, then a Gaussian head (the seed's conv VAE
    encoder, without batch normalisation so that evaluation needs no mode switch).

    :param input_shape: ``(C, H, W)``; H and W divisible by 4.
    :param int latent_dim: dimension of z.
    :param channels: the two convolutions' output channels.
    :param int hidden_dim: width of the dense layer after the convolutions.
    :param int cond_dim: width of a condition appended after flattening (CVAE), or 0.

    ``forward(x, c=None)``: ``x`` is ``(B, C, H, W)``; returns ``(loc, scale)``, ``(B, latent_dim)``.
    """

    def __init__(
        self,
        input_shape,
        latent_dim: int,
        channels=(32, 64),
        hidden_dim: int = 128,
        cond_dim: int = 0,
        activation: str = "relu",
        parameterization: str = "softplus",
    ):
        super().__init__()
        self.input_shape = _check_image_shape(input_shape, "input_shape")
        if not isinstance(channels, (tuple, list)) or len(channels) != 2:
            raise ValueError(f"`channels` must hold two ints, but got {channels!r}")
        c1, c2 = check_dims(channels, "channels")
        self.cond_dim = check_nonnegative_int(cond_dim, "cond_dim")
        act = activation
        self.features = nn.Sequential(
            nn.Conv2d(self.input_shape[0], c1, 3, stride=2, padding=1),
            _act(act),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),
            _act(act),
            nn.Flatten(),
        )
        flat = c2 * (self.input_shape[1] // 4) * (self.input_shape[2] // 4)
        self.dense = nn.Sequential(
            nn.Linear(flat + self.cond_dim, check_positive_int(hidden_dim, "hidden_dim")), _act(act)
        )
        self.head = GaussianHead(hidden_dim, check_positive_int(latent_dim, "latent_dim"), parameterization)

    def forward(self, x: torch.Tensor, c=None):
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"ConvEncoder expects inputs of shape (B, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
            )
        h = append_cond(self.features(x), c, self.cond_dim, "ConvEncoder")
        return self.head(self.dense(h))


@recorded
class ConvDecoder(nn.Module):
    """A dense layer, then two stride-2 transposed convolutions back to ``output_shape``.

    ``forward(z, c=None)``: ``z`` is ``(..., latent_dim)``; returns ``(..., C, H, W)`` with no
    output activation.
    """

    def __init__(
        self,
        latent_dim: int,
        output_shape,
        channels=(64, 32),
        hidden_dim: int = 128,
        cond_dim: int = 0,
        activation: str = "relu",
    ):
        super().__init__()
        self.output_shape = _check_image_shape(output_shape, "output_shape")
        if not isinstance(channels, (tuple, list)) or len(channels) != 2:
            raise ValueError(f"`channels` must hold two ints, but got {channels!r}")
        c1, c2 = check_dims(channels, "channels")
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.cond_dim = check_nonnegative_int(cond_dim, "cond_dim")
        c, h, w = self.output_shape
        self._grid = (c1, h // 4, w // 4)
        act = activation
        self.dense = nn.Sequential(
            nn.Linear(self.latent_dim + self.cond_dim, check_positive_int(hidden_dim, "hidden_dim")),
            _act(act),
            nn.Linear(hidden_dim, c1 * (h // 4) * (w // 4)),
            _act(act),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(c1, c2, 4, stride=2, padding=1),
            _act(act),
            nn.ConvTranspose2d(c2, c, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor, c=None) -> torch.Tensor:
        lead = z.shape[:-1]
        h = self.dense(append_cond(z, c, self.cond_dim, "ConvDecoder"))
        out = self.deconv(h.reshape(-1, *self._grid))
        return out.reshape(*lead, *self.output_shape)


def _act(name):
    return activation(name)
