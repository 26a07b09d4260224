"""VAE-GAN: a VAE whose decoder is also a GAN's generator (Larsen et al., 2016)."""

from __future__ import annotations

import pyro
import torch
from torch import nn
from torch.nn import functional as F

from .._spec import recorded
from .._validate import check_module, check_nonnegative_int, check_positive_float
from .vae import VAE


@recorded
class VAEGAN(nn.Module):
    r"""A VAE whose decoder doubles as the generator of a GAN [1].

    The model is the VAE's, plus a ``pyro.factor`` with the generator's adversarial term:
    ``-gan_weight * [log D(recon) + log D(decode(z_p))]`` per datum, with ``recon`` decoded
    from the guide's z and ``z_p ~ N(0, I)``. The discriminator ``D`` (logits of "real") is
    trained by :meth:`adversary_step` on real vs reconstructed vs prior samples, with its own
    Adam optimizer; :func:`ppmodels.infer.fit` calls it before every ELBO step and trains only
    the VAE's parameters (:meth:`elbo_parameters`), so the updates alternate.

    :param vae: a :class:`VAE` (its decoder's mean is what the discriminator sees).
    :param discriminator: ``x -> (B,)`` or ``(B, 1)`` logits.
    :param float gan_weight: weight of the generator's adversarial term (nats per datum).
    :param float discriminator_lr: Adam learning rate of the discriminator.
    :param int discriminator_steps: discriminator updates per ELBO step (0 freezes it).

    References:

    [1] Larsen, Sønderby, Larochelle & Winther, Autoencoding beyond pixels using a learned
    similarity metric, 2016.
    """

    def __init__(
        self,
        vae: VAE,
        discriminator: nn.Module,
        gan_weight: float = 1.0,
        discriminator_lr: float = 2e-4,
        discriminator_steps: int = 1,
    ):
        super().__init__()
        if not isinstance(vae, VAE):
            raise TypeError(f"`vae` must be a ppmodels.models.VAE, but got {type(vae).__name__}")
        self.vae = vae
        self.discriminator = check_module(discriminator, "discriminator")
        self.gan_weight = check_positive_float(gan_weight, "gan_weight")
        self.discriminator_lr = check_positive_float(discriminator_lr, "discriminator_lr")
        self.discriminator_steps = check_nonnegative_int(discriminator_steps, "discriminator_steps")
        self.__dict__["_d_optimizer"] = None

    scales_by_num_data = True  # as DataSizeMixin: fit sets num_data (the VAE's) and this pair scales its batches

    @property
    def num_data(self):
        return self.vae.num_data

    def set_num_data(self, num_data):
        self.vae.set_num_data(num_data)
        return self

    def elbo_parameters(self):
        """The parameters the ELBO step trains: the VAE's (not the discriminator's)."""
        return self.vae.parameters()

    def _logits(self, x):
        return self.discriminator(x).reshape(x.shape[0])

    def _decode_mean(self, z):
        return self.vae.likelihood_dist(self.vae.decoder(z)).mean

    def model(self, x, y=None):
        vae = self.vae
        vae._check_x(x)
        with vae.data_plate(x):
            z = pyro.sample("z", vae._prior(x, None))
            out = vae.decoder(z)
            vae._check_decoded(out, x)
            pyro.sample("x", vae.likelihood_dist(out, x.dim() - 1), obs=x)
            recon = vae.likelihood_dist(out, x.dim() - 1).mean
            prior_images = self._decode_mean(torch.randn_like(z))
            fooled = F.logsigmoid(self._logits(recon)) + F.logsigmoid(self._logits(prior_images))
            pyro.factor("gan", self.gan_weight * fooled)

    def guide(self, x, y=None):
        return self.vae.guide(x)

    def discriminator_loss(self, x):
        """Binary cross-entropy of D on real (label 1), reconstructed and prior samples (0)."""
        with torch.no_grad():
            loc, scale = self.vae.encode(x)
            recon = self._decode_mean(loc + scale * torch.randn_like(loc))
            prior_images = self._decode_mean(torch.randn_like(loc))
        real, fake_r, fake_p = self._logits(x), self._logits(recon), self._logits(prior_images)
        ones, zeros = torch.ones_like(real), torch.zeros_like(real)
        return (
            F.binary_cross_entropy_with_logits(real, ones)
            + F.binary_cross_entropy_with_logits(fake_r, zeros)
            + F.binary_cross_entropy_with_logits(fake_p, zeros)
        )

    def adversary_step(self, x, y=None):
        """Update the discriminator ``discriminator_steps`` times on this batch."""
        if self._d_optimizer is None:
            self.__dict__["_d_optimizer"] = torch.optim.Adam(
                self.discriminator.parameters(), lr=self.discriminator_lr, betas=(0.5, 0.999)
            )
        for _ in range(self.discriminator_steps):
            self._d_optimizer.zero_grad(set_to_none=True)
            self.discriminator_loss(x).backward()
            self._d_optimizer.step()
        for p in self.discriminator.parameters():  # the ELBO step must not see stale D gradients
            p.grad = None

    @torch.no_grad()
    def generate(self, num_samples: int, seed: int | None = None):
        return self.vae.generate(num_samples, seed=seed)

    @torch.no_grad()
    def reconstruct(self, x, y=None, sample: bool = False, seed: int | None = None):
        return self.vae.reconstruct(x, sample=sample, seed=seed)


def sharpness(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute image gradient per image (finite differences along H and W): blurrier
    images score lower. ``images`` is ``(N, C, H, W)``; returns ``(N,)``."""
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).mean(1)
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).mean(1)
    return 0.5 * (dx + dy)
