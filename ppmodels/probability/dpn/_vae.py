"""``dpn.VAE`` and ``dpn.ConditionalVAE`` with MindSpore's signatures, returns and checks.

Each is a thin adapter: it owns the user's encoder/decoder and MindSpore's three dense
layers, and hands :class:`ppmodels.models.VAE` / :class:`ppmodels.models.CVAE` pairs built on
the same modules to the training engine.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ... import models
from .._checks import check_positive_int

_OUTPUT_PRIORS = {"Normal": ("normal", math.sqrt(0.5), None), "Bernoulli": ("bernoulli", 1.0, "probs")}


def _dense(n_in, n_out):
    layer = nn.Linear(n_in, n_out)
    nn.init.normal_(layer.weight, 0.0, 0.01)  # MindSpore Dense(weight_init='normal'), sigma 0.01
    nn.init.zeros_(layer.bias)
    return layer


def _check_shape(shape, generate_nums):
    if not (isinstance(shape, (tuple, list)) and len(shape) == 4 and shape[0] in (-1, generate_nums)):
        raise ValueError("The shape must be (generate_nums, C, H, W) or (-1, C, H, W).")


class _GaussianEncoder(nn.Module):
    """encoder -> (dense1, dense2) -> (mu, std = exp(0.5 * log_var)), MindSpore's heads."""

    def __init__(self, owner):
        super().__init__()
        self.encoder, self.dense1, self.dense2 = owner.encoder, owner.dense1, owner.dense2
        self.conditional = isinstance(owner, ConditionalVAE)

    def forward(self, x, c=None):
        h = self.encoder(x, c.argmax(-1)) if self.conditional else self.encoder(x)
        return self.dense1(h), torch.exp(0.5 * self.dense2(h))


class _Decoder(nn.Module):
    """dense3 -> decoder (after concatenating the one-hot label for the CVAE)."""

    def __init__(self, owner):
        super().__init__()
        self.dense3, self.decoder = owner.dense3, owner.decoder

    def forward(self, z, c=None):
        return self.decoder(self.dense3(z if c is None else torch.cat([z, c.to(z.dtype)], dim=-1)))


class VAE(nn.Module):
    """Variational auto-encoder, MindSpore's ``dpn.VAE(encoder, decoder, hidden_size, latent_size)``.

    The encoder maps ``x`` to ``(N, hidden_size)``; ``dense1``/``dense2`` give ``mu`` and
    ``log_var`` (``std = exp(0.5 * log_var)``); ``dense3`` maps z back to ``hidden_size``
    features for the decoder. Calling it returns ``(recon_x, x, mu, std)`` with one
    reparameterised sample of z.

    :raises TypeError: the encoder or decoder is not a ``torch.nn.Module``; a size is not an int.
    :raises ValueError: a size is not positive; ``latent_size > hidden_size``.
    """

    def __init__(self, encoder, decoder, hidden_size, latent_size):
        super().__init__()
        self._check_nets(encoder, decoder)
        self.hidden_size = check_positive_int(hidden_size, "hidden_size")
        self.latent_size = check_positive_int(latent_size, "latent_size")
        if self.latent_size > self.hidden_size:
            raise ValueError("The latent_size must be less than or equal to the hidden_size.")
        self.encoder, self.decoder = encoder, decoder
        self.dense1 = _dense(self.hidden_size, self.latent_size)
        self.dense2 = _dense(self.hidden_size, self.latent_size)
        self.dense3 = _dense(self._decoder_in(), self.hidden_size)
        self.__dict__["_cores"] = {}

    @staticmethod
    def _check_nets(encoder, decoder):
        if not (isinstance(encoder, nn.Module) and isinstance(decoder, nn.Module)):
            raise TypeError(
                "The encoder and decoder must be Cell type (torch.nn.Module in ppmodels), but got "
                f"encoder={type(encoder).__name__}, decoder={type(decoder).__name__}."
            )

    def _decoder_in(self):
        return self.latent_size

    def trainable_params(self):
        """The parameters to optimise (MindSpore's name for ``parameters()``)."""
        return [p for p in self.parameters() if p.requires_grad]

    def core(self, output_prior: str = "Normal"):
        """The :class:`ppmodels.models.VAE` model/guide pair on this network's modules.

        ``output_prior='Normal'`` is MindSpore's loss: a Normal likelihood with variance 1/2,
        whose negative log-density is the squared error plus a constant.
        """
        if output_prior not in self._cores:
            likelihood, scale, out = _OUTPUT_PRIORS[output_prior]
            self._cores[output_prior] = self._build_core(likelihood, scale, out)
        return self._cores[output_prior]

    def _build_core(self, likelihood, scale, out):
        return models.VAE(
            _GaussianEncoder(self),
            _Decoder(self),
            self.latent_size,
            likelihood=likelihood,
            scale=scale,
            decoder_output=out,
        )

    def _encode(self, x, y=None):
        return self.core().encoder(x) if y is None else self.core().encoder(x, self._one_hot(y))

    def _reparameterise(self, mu, std):
        return mu + std * torch.randn_like(mu)

    def forward(self, x):
        mu, std = self._encode(x)
        recon_x = self.core().decoder(self._reparameterise(mu, std))
        return recon_x, x, mu, std

    @torch.no_grad()
    def generate_sample(self, generate_nums, shape):
        """Decode ``generate_nums`` draws z ~ N(0, I) and reshape to ``shape``, which must be
        ``(generate_nums, C, H, W)`` or ``(-1, C, H, W)``."""
        generate_nums = check_positive_int(generate_nums, "generate_nums")
        _check_shape(shape, generate_nums)
        z = torch.randn(generate_nums, self.latent_size, device=self.dense1.weight.device)
        return self.core().decoder(z).reshape(tuple(shape))

    @torch.no_grad()
    def reconstruct_sample(self, x):
        """Encode ``x``, draw z from the posterior (not its mean), decode: stochastic."""
        return self.forward(x)[0]


class ConditionalVAE(VAE):
    """Conditional VAE, MindSpore's ``dpn.ConditionalVAE(encoder, decoder, hidden_size, latent_size, num_classes)``.

    The encoder is called as ``encoder(x, y)`` with int labels ``y`` of shape ``(N,)``; the
    decoder receives ``dense3(concat(z, one_hot(y)))``. Calling it as ``cvae(x, y)`` returns
    ``(recon_x, x, mu, std)``.
    """

    def __init__(self, encoder, decoder, hidden_size, latent_size, num_classes):
        self.__dict__["num_classes"] = check_positive_int(num_classes, "num_classes")
        super().__init__(encoder, decoder, hidden_size, latent_size)

    def _decoder_in(self):
        return self.latent_size + self.num_classes

    def _build_core(self, likelihood, scale, out):
        return models.CVAE(
            _GaussianEncoder(self),
            _Decoder(self),
            self.latent_size,
            self.num_classes,
            prior="standard",
            likelihood=likelihood,
            scale=scale,
            decoder_output=out,
        )

    def _one_hot(self, y):
        dummy = torch.empty((y.shape[0] if y.dim() else 0, 1), device=y.device)
        return self.core()._condition(dummy, y)

    def forward(self, x, y):
        c = self._one_hot(y)
        mu, std = self.core().encoder(x, c)
        recon_x = self.core().decoder(self._reparameterise(mu, std), c)
        return recon_x, x, mu, std

    @torch.no_grad()
    def generate_sample(self, sample_y, generate_nums, shape):
        """Decode z ~ N(0, I) with the labels ``sample_y`` (ints, shape ``(generate_nums,)``)."""
        generate_nums = check_positive_int(generate_nums, "generate_nums")
        _check_shape(shape, generate_nums)
        if not isinstance(sample_y, torch.Tensor):
            sample_y = torch.as_tensor(sample_y)
        if sample_y.shape != (generate_nums,):
            raise ValueError(f"The sample_y must have shape ({generate_nums},), but got {tuple(sample_y.shape)}.")
        sample_y = sample_y.to(self.dense1.weight.device)
        z = torch.randn(generate_nums, self.latent_size, device=self.dense1.weight.device)
        return self.core().decoder(z, self._one_hot(sample_y)).reshape(tuple(shape))

    @torch.no_grad()
    def reconstruct_sample(self, x, y):
        """Stochastic reconstruction of ``x`` given labels ``y``."""
        return self.forward(x, y)[0]
