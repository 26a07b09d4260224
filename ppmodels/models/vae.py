"""Variational auto-encoders as Pyro model/guide pairs."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from .._spec import recorded
from .._validate import check_choice, check_module, check_positive_float, check_positive_int
from ._normal import ScalarScaleNormal
from ._plate import DataSizeMixin

LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "normal")
_PROB_EPS = 1e-6


@recorded
class VAE(DataSizeMixin, nn.Module):
    r"""Variational auto-encoder: :math:`p(z) = N(0, I)`, :math:`p_\theta(x | z)` from the
    decoder, :math:`q_\phi(z | x) = N(\mu_\phi(x), \sigma_\phi(x))` from the encoder (reference 1).

    ``model(x, y=None)`` and ``guide(x, y=None)`` share the site names ``"z"`` and ``"x"``
    and the plate ``"data"``. When :attr:`num_data` is set (``fit`` sets it to the size of
    the training set), the plate has size ``num_data`` and a mini-batch's terms are scaled
    by ``num_data / batch_size``, so the loss of a batch estimates the whole data set's
    negative ELBO. Labels ``y``, when the data yield them, are accepted and not used (see
    :class:`CVAE` for a model that uses them).

    :param encoder: ``x -> (loc, scale)``, each ``(B, latent_dim)`` (e.g. :class:`ppmodels.nn.MLPEncoder`).
    :param decoder: ``z -> `` likelihood parameters of the shape of one batch of data,
        ``(B, *event_shape)``: logits (or probabilities, see ``decoder_output``) for the
        Bernoulli families, means for ``normal``.
    :param int latent_dim: dimension of z.
    :param str likelihood: ``"bernoulli"`` (binary cross-entropy; grey values in [0, 1] are
        accepted as soft targets), ``"continuous_bernoulli"`` (a normalised density on
        [0, 1], reference 2) or ``"normal"``.
    :param scale: for ``"normal"``: a fixed standard deviation (float) or ``"learned"`` (one
        shared, learned standard deviation, initialised at 1).
    :param str decoder_output: what the decoder returns: ``"logits"`` (default for the
        Bernoulli families), ``"probs"`` (e.g. a decoder ending in a sigmoid) or ``"mean"``
        (the only choice for ``"normal"``).

    Example::

        >>> from ppmodels.models import VAE
        >>> from ppmodels.nn import MLPEncoder, MLPDecoder
        >>> vae = VAE(MLPEncoder((1, 8, 8), 2), MLPDecoder(2, (1, 8, 8)), latent_dim=2)
        >>> vae.generate(3, seed=0).shape
        torch.Size([3, 1, 8, 8])

    References:

    [1] Kingma & Welling, Auto-Encoding Variational Bayes, 2014.
    [2] Loaiza-Ganem & Cunningham, The continuous Bernoulli, 2019.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        latent_dim: int,
        likelihood: str = "bernoulli",
        scale=1.0,
        decoder_output: str | None = None,
    ):
        super().__init__()
        self.encoder = check_module(encoder, "encoder")
        self.decoder = check_module(decoder, "decoder")
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.likelihood = check_choice(likelihood, "likelihood", LIKELIHOODS)
        if likelihood == "normal":
            outputs = ["mean"]
        else:
            outputs = ["logits", "probs"]
        self.decoder_output = check_choice(decoder_output or outputs[0], "decoder_output", outputs)
        self.log_scale = None
        self._fixed_scale = None
        if likelihood == "normal":
            if scale == "learned":
                self.log_scale = nn.Parameter(torch.zeros(()))
            else:
                self._fixed_scale = check_positive_float(scale, "scale")
        elif scale != 1.0:
            raise ValueError(
                f"`scale` applies to likelihood='normal' only, but got scale={scale!r} with likelihood={likelihood!r}"
            )

    # -- pieces shared with CVAE -------------------------------------------------------
    def _condition(self, x, y):
        """The one-hot condition (None for the unconditional VAE)."""
        return None

    def _prior(self, x, c):
        return dist.Normal(x.new_zeros((x.shape[0], self.latent_dim)), 1.0).to_event(1)

    def _call(self, net, *args, c=None):
        return net(*args) if c is None else net(*args, c)

    def _check_x(self, x):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"`x` must be a torch.Tensor, but got {type(x).__name__}")
        if x.dim() < 2:
            raise ValueError(f"`x` must be a batch of shape (B, ...), but got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(
                f"`x` must hold floating-point values (images scaled to [0, 1]), but got dtype {x.dtype}; "
                "convert with x.float() (and / 255 for 8-bit images)"
            )

    @property
    def output_scale(self):
        """The Normal likelihood's standard deviation (a tensor), or None for other likelihoods."""
        if self.likelihood != "normal":
            return None
        if self.log_scale is not None:
            return self.log_scale.exp()
        return torch.tensor(self._fixed_scale)

    def likelihood_dist(self, out: torch.Tensor, event_dims: int | None = None):
        """The distribution ``p(x | z)`` for decoder output ``out`` of shape ``(..., B, *event)``;
        ``event_dims`` is ``len(event)`` (default ``out.dim() - 1``: no leading particle dims)."""
        if event_dims is None:
            event_dims = out.dim() - 1
        if self.likelihood == "normal":
            scale = self.log_scale.exp() if self.log_scale is not None else self._fixed_scale
            d = ScalarScaleNormal(out, scale)
        else:
            family = dist.Bernoulli if self.likelihood == "bernoulli" else dist.ContinuousBernoulli
            if self.decoder_output == "logits":
                d = family(logits=out, validate_args=False)
            else:
                d = family(probs=out.clamp(_PROB_EPS, 1 - _PROB_EPS), validate_args=False)
        return d.to_event(event_dims)

    def _check_decoded(self, out, x):
        if out.shape[out.dim() - x.dim() :] != x.shape:
            if out.dim() == x.dim() and out.shape[0] % x.shape[0] == 0 and out.shape[0] > x.shape[0]:
                raise ValueError(
                    f"the decoder returned shape {tuple(out.shape)} for a batch of shape {tuple(x.shape)}: it folded "
                    f"{out.shape[0] // x.shape[0]} vectorised particles into the batch. With vectorize_particles=True "
                    "the decoder receives z of shape (P, B, latent_dim) and must keep the leading dimensions (reshape "
                    "with z.shape[:-1] + event_shape, not -1); or train with vectorize_particles=False"
                )
            raise ValueError(
                f"the decoder returned shape {tuple(out.shape)} but the data batch has shape {tuple(x.shape)}; "
                "the decoder must map (B, latent_dim) to the shape of one batch of data. Try one of: "
                "reshape inside the decoder, or build it with output_shape=x.shape[1:]"
            )

    def _check_encoded(self, enc, x):
        if not (isinstance(enc, (tuple, list)) and len(enc) == 2):
            raise ValueError(
                f"the encoder must return (loc, scale), got {type(enc).__name__}; wrap a feature "
                "network with ppmodels.nn.GaussianHead to get both"
            )
        expected = (x.shape[0], self.latent_dim)
        for name, t in zip(("loc", "scale"), enc):
            if tuple(t.shape) != expected:
                raise ValueError(f"the encoder's {name} has shape {tuple(t.shape)}, expected {expected}")
        return enc

    # -- the pair ----------------------------------------------------------------------
    def model(self, x, y=None):
        """p(z) p(x | z) over a batch ``x`` of shape ``(B, *event_shape)``."""
        self._check_x(x)
        c = self._condition(x, y)
        with self.data_plate(x):
            z = pyro.sample("z", self._prior(x, c))
            out = self._call(self.decoder, z, c=c)
            self._check_decoded(out, x)
            pyro.sample("x", self.likelihood_dist(out, x.dim() - 1), obs=x)

    def guide(self, x, y=None):
        """q(z | x) over a batch ``x``."""
        self._check_x(x)
        c = self._condition(x, y)
        with self.data_plate(x):
            loc, scale = self._check_encoded(self._call(self.encoder, x, c=c), x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    # -- using a trained pair ----------------------------------------------------------
    def encode(self, x, y=None):
        """``(loc, scale)`` of q(z | x), each ``(B, latent_dim)``."""
        self._check_x(x)
        c = self._condition(x, y)
        return self._check_encoded(self._call(self.encoder, x, c=c), x)

    def decode(self, z, y=None):
        """The mean of p(x | z) for latents ``z`` of shape ``(B, latent_dim)``."""
        c = self._condition(z, y)
        return self.likelihood_dist(self._call(self.decoder, z, c=c)).mean

    @torch.no_grad()
    def reconstruct(self, x, y=None, sample: bool = False, seed: int | None = None):
        """Decode the encoding of ``x``: at the posterior mean (default) or a posterior sample."""
        loc, scale = self.encode(x, y)
        z = loc
        if sample:
            z = loc + scale * torch.randn(loc.shape, generator=seeded_generator(seed, loc.device), device=loc.device)
        return self.decode(z, y)

    def _latent_prior_sample(self, n, c, seed, device):
        eps = torch.randn((n, self.latent_dim), generator=seeded_generator(seed, device), device=device)
        return eps

    @torch.no_grad()
    def generate(self, num_samples: int, seed: int | None = None):
        """Means of p(x | z) for ``num_samples`` draws z ~ p(z); shape ``(num_samples, *event)``."""
        n = check_positive_int(num_samples, "num_samples")
        device = device_of(self)
        return self.decode(self._latent_prior_sample(n, None, seed, device))


def device_of(module):
    """The device of ``module``'s first parameter (the CPU when it has none)."""
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def seeded_generator(seed, device):
    """A generator on ``device`` seeded with ``seed``, or ``None`` (torch's global one) when ``seed`` is None."""
    if seed is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


@recorded
class CVAE(VAE):
    r"""Conditional VAE [1]: ``p(z | y) p(x | z, y)`` with ``q(z | x, y)``.

    Labels ``y`` are ints in ``[0, num_classes)``; the encoder and decoder receive them
    one-hot as a second argument (``encoder(x, c)``, ``decoder(z, c)``; the ppmodels networks
    take ``cond_dim=num_classes``).

    :param int num_classes: number of classes.
    :param str prior: ``"learned"`` (a prior network ``prior_net`` maps the one-hot label to
        the location and scale of p(z | y)) or ``"standard"`` (p(z | y) = N(0, I)).

    The other arguments are :class:`VAE`'s.

    References:

    [1] Sohn, Lee & Yan, Learning Structured Output Representation using Deep Conditional
    Generative Models, 2015.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        latent_dim: int,
        num_classes: int,
        prior: str = "learned",
        likelihood: str = "bernoulli",
        scale=1.0,
        decoder_output: str | None = None,
    ):
        super().__init__(
            encoder, decoder, latent_dim, likelihood=likelihood, scale=scale, decoder_output=decoder_output
        )
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.prior = check_choice(prior, "prior", ["learned", "standard"])
        self.prior_net = nn.Linear(self.num_classes, 2 * self.latent_dim) if prior == "learned" else None
        if self.prior_net is not None:
            nn.init.zeros_(self.prior_net.weight)
            nn.init.constant_(self.prior_net.bias, 0.0)
            with torch.no_grad():  # start at N(0, I): softplus(0.5413) = 1
                self.prior_net.bias[self.latent_dim :] = math.log(math.e - 1)

    def _condition(self, x, y):
        if y is None:
            raise ValueError(
                f"CVAE needs labels: call with (x, y), y of shape (B,) with ints in [0, {self.num_classes})"
            )
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"`y` must be a torch.Tensor of int labels, but got {type(y).__name__}")
        if y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex():
            raise TypeError(f"`y` must hold integer labels, but got dtype {y.dtype}")
        if y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"`y` must have shape ({x.shape[0]},) to match the batch, but got {tuple(y.shape)}")
        if y.numel():
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= self.num_classes:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"`y` holds label {bad}, outside [0, {self.num_classes}) (num_classes={self.num_classes})"
                )
        return F.one_hot(y.long(), self.num_classes).to(x.dtype if x.is_floating_point() else torch.float32)

    def _prior(self, x, c):
        if self.prior_net is None:
            return super()._prior(x, c)
        loc, raw = self.prior_net(c).split(self.latent_dim, dim=-1)
        return dist.Normal(loc, F.softplus(raw) + 1e-5).to_event(1)

    def _latent_prior_sample(self, n, c, seed, device):
        eps = super()._latent_prior_sample(n, None, seed, device)
        if self.prior_net is None:
            return eps
        loc, raw = self.prior_net(c).split(self.latent_dim, dim=-1)
        return loc + (F.softplus(raw) + 1e-5) * eps

    @torch.no_grad()
    def generate(self, y, seed: int | None = None):
        """Means of p(x | z, y) for z ~ p(z | y), one per label in ``y`` (shape ``(n,)``)."""
        device = device_of(self)
        if isinstance(y, (list, tuple)):
            y = torch.tensor(y, dtype=torch.long)
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"`y` must be a tensor or list of int labels, but got {type(y).__name__}")
        y = y.to(device)
        dummy = torch.empty((y.shape[0] if y.dim() else 0, 1), device=device)
        c = self._condition(dummy, y)
        z = self._latent_prior_sample(y.shape[0], c, seed, device)
        return self.decode(z, y)
