"""The semi-supervised VAE (M2 of Kingma et al. 2014) as a Pyro model/guide pair."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn
from torch.nn import functional as F

from .._spec import recorded
from .._validate import check_module, check_positive_int
from .vae import VAE, device_of, seeded_generator


def _broadcast(a, b):
    """``a`` and ``b`` expanded to their common leading (batch and enumeration) shape."""
    lead = torch.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    return a.expand(lead + a.shape[-1:]), b.expand(lead + b.shape[-1:])


@recorded
class SSVAE(VAE):
    r"""Semi-supervised VAE, M2 [1]: :math:`p(z) = N(0, I)`, :math:`p(y)` uniform over
    ``num_classes``, :math:`p_\theta(x | y, z)` from the decoder; :math:`q_\phi(y | x)` from the
    classifier and :math:`q_\phi(z | x, y)` from the encoder. The label is observed where it
    is known and summed out exactly where it is not (the guide marks ``y`` for parallel
    enumeration): train with ``elbo="enum"``.

    ``model(x, y=None, x_unlabelled=None, sizes=None)`` and the guide take a labelled batch
    ``(x, y)`` and/or an unlabelled one (``x`` without ``y``, or ``x_unlabelled`` beside a
    labelled batch), each in a plate of its own (``"labelled"``, ``"unlabelled"``; sites
    ``y_l``, ``z_l``, ``x_l`` and ``y_u``, ``z_u``, ``x_u``). ``sizes = (N_l, N_u)`` scales each
    part to its whole set (each plate's full size, subsampled to the batch), so a step's loss
    estimates the ELBO of all the data: :class:`ppmodels.data.SemiSupervisedBatches` yields
    such batches, one labelled and one unlabelled mini-batch per step.

    :param classifier: ``x -> `` logits of q(y | x), ``(B, num_classes)`` (e.g.
        :class:`ppmodels.nn.MLPClassifier`).
    :param encoder: ``(x, c) -> (loc, scale)`` of q(z | x, y), ``c`` the one-hot label
        (e.g. :class:`ppmodels.nn.MLPEncoder` with ``cond_dim=num_classes``); called with the
        leading dimensions of the enumerated label, as the ppmodels networks allow.
    :param decoder: ``(z, c) -> `` likelihood parameters (e.g. :class:`ppmodels.nn.MLPDecoder`
        with ``cond_dim=num_classes``).
    :param int latent_dim: dimension of z.
    :param int num_classes: number of classes.
    :param float aux_weight: α of the auxiliary classification loss: the labelled part of the
        model also scores ``α · log q(y | x)`` (site ``y_aux``), so the classifier learns from
        the labels directly (M2 alone trains q(y | x) only through the unlabelled term).
        Kingma et al. use α = 0.1 N; 0 turns it off.
    :param likelihood: as :class:`VAE`'s (default ``"bernoulli"``).

    ``max_plate_nesting`` is 1: ``fit(..., elbo="enum")`` enumerates to the left of the plates.

    References:

    [1] Kingma, Rezende, Mohamed & Welling, Semi-Supervised Learning with Deep Generative
    Models, 2014.
    """

    max_plate_nesting = 1

    def __init__(
        self,
        classifier: nn.Module,
        encoder: nn.Module,
        decoder: nn.Module,
        latent_dim: int,
        num_classes: int,
        aux_weight: float = 0.0,
        likelihood: str = "bernoulli",
        scale=1.0,
        decoder_output: str | None = None,
    ):
        super().__init__(
            encoder, decoder, latent_dim, likelihood=likelihood, scale=scale, decoder_output=decoder_output
        )
        self.classifier = check_module(classifier, "classifier")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        if isinstance(aux_weight, bool) or not isinstance(aux_weight, (int, float)) or not aux_weight >= 0:
            raise ValueError(f"`aux_weight` must be a number >= 0, but got {aux_weight!r}")
        self.aux_weight = float(aux_weight)

    # -- pieces --------------------------------------------------------------------------
    def _one_hot(self, y, x):
        if not isinstance(y, torch.Tensor) or y.dtype.is_floating_point or y.dtype == torch.bool:
            raise TypeError(f"`y` must be a tensor of integer labels, but got {getattr(y, 'dtype', type(y).__name__)}")
        if y.shape != x.shape[:1]:
            raise ValueError(f"`y` must have shape ({x.shape[0]},) to match the batch, but got {tuple(y.shape)}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
            raise ValueError(f"`y` holds label {bad}, outside [0, {self.num_classes})")
        return F.one_hot(y.long(), self.num_classes).to(x.dtype)

    def _encode(self, x, c):
        """q(z | x, y) with ``c`` possibly carrying enumeration dimensions on the left."""
        lead = torch.broadcast_shapes(x.shape[:1], c.shape[:-1])
        xb = x.expand(lead + x.shape[1:])
        return self.encoder(xb, c.expand(lead + c.shape[-1:]))

    def _plate(self, name, x, size):
        b = x.shape[0]
        if size is None:
            return pyro.plate(name, b)
        return pyro.plate(
            name, size=check_positive_int(size, f"sizes ({name})"), subsample=torch.arange(b, device=x.device)
        )

    def _parts(self, x, y, x_unlabelled, sizes):
        if x is None and x_unlabelled is None:
            raise ValueError("SSVAE needs a batch: x (with or without y), or x_unlabelled")
        if y is None and x_unlabelled is not None:
            raise ValueError("`x_unlabelled` goes beside a labelled batch (x, y); give an unlabelled batch alone as x")
        n_l, n_u = (None, None) if sizes is None else tuple(sizes)
        parts = []
        if x is not None:
            self._check_x(x)
            parts.append(("l", x, self._one_hot(y, x), n_l) if y is not None else ("u", x, None, n_u))
        if x_unlabelled is not None:
            self._check_x(x_unlabelled)
            parts.append(("u", x_unlabelled, None, n_u))
        return parts

    # -- the pair ------------------------------------------------------------------------
    def model(self, x=None, y=None, x_unlabelled=None, sizes=None):
        for tag, xs, c, size in self._parts(x, y, x_unlabelled, sizes):
            with self._plate("labelled" if tag == "l" else "unlabelled", xs, size):
                z = pyro.sample(f"z_{tag}", dist.Normal(xs.new_zeros(len(xs), self.latent_dim), 1.0).to_event(1))
                prior_y = dist.OneHotCategorical(probs=xs.new_ones(len(xs), self.num_classes) / self.num_classes)
                c = pyro.sample(f"y_{tag}", prior_y, obs=c)
                z, c = _broadcast(z, c)
                out = self.decoder(z, c)
                pyro.sample(f"x_{tag}", self.likelihood_dist(out, xs.dim() - 1), obs=xs)
                if tag == "l" and self.aux_weight > 0:
                    with poutine.scale(scale=self.aux_weight):
                        logits = self.classifier(xs)
                        pyro.sample("y_aux", dist.Categorical(logits=logits), obs=c.argmax(-1))

    def guide(self, x=None, y=None, x_unlabelled=None, sizes=None):
        for tag, xs, c, size in self._parts(x, y, x_unlabelled, sizes):
            with self._plate("labelled" if tag == "l" else "unlabelled", xs, size):
                if c is None:
                    c = pyro.sample(
                        f"y_{tag}",
                        dist.OneHotCategorical(logits=self.classifier(xs)),
                        infer={"enumerate": "parallel"},
                    )
                loc, scale = self._encode(xs, c)
                pyro.sample(f"z_{tag}", dist.Normal(loc, scale).to_event(1))

    # -- using a trained pair -------------------------------------------------------------
    @torch.no_grad()
    def class_probs(self, x) -> torch.Tensor:
        """q(y | x): ``(B, num_classes)``."""
        self._check_x(x)
        return self.classifier(x).softmax(-1)

    def classify(self, x) -> torch.Tensor:
        """The most probable label under q(y | x): ``(B,)``."""
        return self.class_probs(x).argmax(-1)

    @torch.no_grad()
    def generate(self, y, seed: int | None = None):
        """Means of p(x | y, z), z ~ N(0, I), one per label in ``y`` (ints, shape ``(n,)``)."""
        device = device_of(self)
        y = torch.as_tensor(y, dtype=torch.long, device=device)
        c = F.one_hot(y, self.num_classes).float()
        z = torch.randn((len(y), self.latent_dim), generator=seeded_generator(seed, device), device=device)
        return self.likelihood_dist(self.decoder(z, c)).mean

    @torch.no_grad()
    def elbo(self, x, y=None, seed: int | None = None) -> torch.Tensor:
        """The ELBO of each sample, in nats (one draw of z per label), without the auxiliary
        term: labelled, ``log p(y) + E_q(z|x,y)[log p(x, z | y) - log q(z | x, y)]``;
        unlabelled, the same averaged over y ~ q(y | x) exactly, plus the entropy of q(y | x).

        :returns: a tensor of shape ``(B,)``.
        """
        self._check_x(x)
        g = seeded_generator(seed, x.device)
        log_py = -math.log(self.num_classes)
        eye = torch.eye(self.num_classes, device=x.device, dtype=x.dtype)
        c = self._one_hot(y, x).unsqueeze(0) if y is not None else eye.unsqueeze(1)  # (1 or K, 1 or B, K)
        loc, scale = self._encode(x, c)
        z = loc + scale * torch.randn(loc.shape, generator=g, device=x.device, dtype=loc.dtype)
        zb, cb = _broadcast(z, c)
        log_px = self.likelihood_dist(self.decoder(zb, cb), x.dim() - 1).log_prob(x)
        log_pz = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_qz = dist.Normal(loc, scale).log_prob(z).sum(-1)
        per_label = log_py + log_px + log_pz - log_qz  # (1 or K, B)
        if y is not None:
            return per_label[0]
        q = self.classifier(x).log_softmax(-1).T  # (K, B)
        return (q.exp() * (per_label - q)).sum(0)
