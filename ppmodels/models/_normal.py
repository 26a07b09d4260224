"""A Normal whose scale is one number for every element (a fixed or learned noise level, an
i.i.d. prior), scored without full-size passes over the scale."""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class ScalarScaleNormal(dist.Normal):
    """``Normal(loc, scale)`` with ``scale`` a float or a 0-dim tensor shared by every element.

    The same distribution as ``dist.Normal(loc, scale)``; only ``log_prob`` differs. torch's
    ``Normal.log_prob`` squares and takes the log of the scale broadcast to the full shape in
    every call; here the log is taken once, of one number, and the density costs four
    elementwise passes instead of about eight (forward and backward). The scale may carry a
    gradient (a learned noise level). ``zero_loc=True`` says ``loc`` is all zeros (an i.i.d.
    prior), which saves the subtraction.
    """

    def __init__(self, loc: torch.Tensor, scale, validate_args=None, zero_loc: bool = False):
        if isinstance(scale, torch.Tensor) and scale.dim() != 0:
            raise ValueError(f"ScalarScaleNormal needs one scale, but got shape {tuple(scale.shape)}")
        self._scale0 = float(scale) if isinstance(scale, (int, float)) else scale
        log_scale = math.log(self._scale0) if isinstance(self._scale0, float) else self._scale0.log()
        self._log_normalizer = log_scale + _HALF_LOG_2PI
        self.zero_loc = zero_loc
        super().__init__(loc, scale, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return ScalarScaleNormal(self.loc.expand(batch_shape), self._scale0, False, self.zero_loc)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        z = value if self.zero_loc and value.shape == self.loc.shape else value - self.loc
        if not (isinstance(self._scale0, float) and self._scale0 == 1.0):
            z = z / self._scale0
        return z.square().mul(-0.5).sub(self._log_normalizer)
