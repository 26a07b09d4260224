"""``infer.ELBO`` and ``infer.SVI`` with MindSpore's signatures; training runs through
:func:`ppmodels.infer.fit` with Pyro's ELBO."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.optim
import torch
from torch import nn
from torch.nn import functional as F

from ... import infer as _infer
from ...infer.training.data import Batches
from ...infer.training.optimizers import prefer_fused_adam
from .._checks import check_positive_int
from ..cells import WithLossCell
from ..dpn import VAE

_OUTPUT_PRIORS = ("Normal", "Bernoulli")


class _Distribution:
    """The slice of MindSpore's string-dispatched ``Normal()`` that ELBO subclasses use:
    ``posterior('kl_loss', 'Normal', mean_b, sd_b, mean_a, sd_a)`` is KL(a || b) elementwise."""

    def __call__(self, method, *args, **kwargs):
        if method == "kl_loss":
            dist_name, mean_b, sd_b, *rest = args
            if dist_name != "Normal":
                raise ValueError(f"kl_loss supports 'Normal' only, but got {dist_name!r}")
            mean_a = rest[0] if rest else kwargs["mean"]
            sd_a = rest[1] if len(rest) > 1 else kwargs["sd"]
            a = torch.distributions.Normal(mean_a, sd_a, validate_args=False)
            b = torch.distributions.Normal(mean_b, sd_b, validate_args=False)
            return torch.distributions.kl_divergence(a, b)
        if method == "log_prob":
            value, mean, sd = args
            return torch.distributions.Normal(mean, sd, validate_args=False).log_prob(value)
        raise ValueError(f"this Normal supports 'kl_loss' and 'log_prob', but got {method!r}")


class ELBO(nn.Module):
    """MindSpore's VAE loss: ``sum((x - recon_x)^2) + sum KL(N(mu, std) || N(0, 1))`` over a batch.

    Passed to :class:`SVI` (inside a :class:`WithLossCell` around a ``dpn.VAE`` or
    ``dpn.ConditionalVAE``) it selects Pyro's ELBO for the core pair: the squared error is
    a Normal likelihood with variance 1/2. Subclass it and override ``forward(data, label)``
    to add loss terms (the VAE-GAN pattern); ``recon_loss``, ``posterior``, ``sum`` and
    ``zeros`` are there to reuse, as in MindSpore.

    :param str latent_prior: ``'Normal'`` only.
    :param str output_prior: ``'Normal'`` (MindSpore) or ``'Bernoulli'`` (ppmodels: binary
        cross-entropy, for decoders ending in a sigmoid).
    :param str estimator: Pyro's estimator for the core pair, by name (ppmodels; default
        ``'trace'``, Pyro's ``Trace_ELBO``).
    :param int num_particles: particles for the estimator (ppmodels).
    :param bool vectorize_particles: draw them in one vectorised pass (ppmodels).
    """

    def __init__(
        self,
        latent_prior="Normal",
        output_prior="Normal",
        estimator="trace",
        num_particles=None,
        vectorize_particles=None,
    ):
        super().__init__()
        if latent_prior != "Normal":
            raise ValueError(f"The values of latent_prior now only support Normal, but got {latent_prior!r}")
        if output_prior not in _OUTPUT_PRIORS:
            raise ValueError(
                "The values of output_dis now only support Normal (ppmodels also accepts "
                f"'Bernoulli'), but got {output_prior!r}"
            )
        _infer.get_elbo(estimator, num_particles, vectorize_particles)  # validate the name and options now
        self.latent_prior, self.output_prior = latent_prior, output_prior
        self.estimator, self.num_particles = estimator, num_particles
        self.vectorize_particles = vectorize_particles
        self.recon_loss = nn.MSELoss(reduction="sum") if output_prior == "Normal" else _BCESum()
        self.posterior = _Distribution()
        self.sum = torch.sum
        self.zeros = torch.zeros_like

    def forward(self, data, label=None):
        recon_x, x, mu, std = data
        reconstruct_loss = self.recon_loss(x, recon_x)
        kl_loss = self.posterior("kl_loss", "Normal", self.zeros(mu), self.zeros(mu) + 1, mu, std)
        return reconstruct_loss + self.sum(kl_loss)


class _BCESum(nn.Module):
    def forward(self, x, recon_x):
        return F.binary_cross_entropy(recon_x.clamp(1e-6, 1 - 1e-6), x, reduction="sum")


def _to_tensor(value, dtype):
    if isinstance(value, torch.Tensor):
        return value.to(dtype)
    return torch.as_tensor(np.asarray(value), dtype=dtype)


class MindSporeBatches:
    """Any iterable of batches as ``(x float32, y int64)`` tuples: dicts with 'image'/'label'
    (MindSpore's columns), ``(x, y)`` tuples, tensors, a DataLoader, or a MindSpore-like
    dataset with ``create_dict_iterator``."""

    def __init__(self, dataset, label_dtype=torch.int64):
        self.label_dtype = label_dtype
        if hasattr(dataset, "create_dict_iterator"):
            self._iterate = lambda: dataset.create_dict_iterator(num_epochs=1)
        elif hasattr(dataset, "__iter__") and iter(dataset) is not dataset:
            self._iterate = lambda: iter(dataset)
        else:
            raise TypeError(
                "The train_dataset must be re-iterable: a DataLoader, a list of batches, or a dataset "
                f"with create_dict_iterator(); got {type(dataset).__name__}"
            )
        self.dataset = dataset

    def __iter__(self):
        for batch in self._iterate():
            if isinstance(batch, dict):
                if "image" not in batch:
                    raise ValueError(
                        f"a dict batch needs an 'image' column (MindSpore's convention), got {list(batch)}"
                    )
                x, y = batch["image"], batch.get("label")
            elif isinstance(batch, (tuple, list)):
                x, y = batch[0], (batch[1] if len(batch) > 1 else None)
            else:
                x, y = batch, None
            x = _to_tensor(x, torch.float32)
            yield (x,) if y is None else (x, _to_tensor(y, self.label_dtype))

    def num_data(self):
        if isinstance(getattr(self.dataset, "num_data", None), int):
            return self.dataset.num_data
        inner = getattr(self.dataset, "dataset", None)
        if isinstance(self.dataset, torch.utils.data.DataLoader) and hasattr(inner, "__len__"):
            return len(inner)
        return sum(int(b[0].shape[0]) for b in self)


class _LossPair(nn.Module):
    """A custom loss as a Pyro model with no latent variables: ``pyro.factor('loss', -loss)``.
    Minimising Trace_ELBO's loss then minimises the user's loss exactly."""

    def __init__(self, net_with_loss):
        super().__init__()
        self.net_with_loss = net_with_loss

    def model(self, x, y=None):
        loss = self.net_with_loss(x, y)
        pyro.factor("loss", -(loss.sum() if loss.dim() else loss))

    def guide(self, x, y=None):
        pass


class SVI:
    """Stochastic variational inference, MindSpore's ``infer.SVI(net_with_loss, optimizer)``.

    ``run`` trains with :func:`ppmodels.infer.fit`. With a plain :class:`ELBO` and a
    ``dpn.VAE``/``dpn.ConditionalVAE`` the network's core Pyro pair is trained with Pyro's
    estimator (``Trace_ELBO`` by default); a custom loss (an ``ELBO`` subclass overriding
    ``forward``, or a ``WithLossCell`` subclass) is trained as written.

    :param net_with_loss: a :class:`WithLossCell` (anything with ``_loss_fn``).
    :param optimizer: a ``torch.optim.Optimizer`` (or a ``pyro.optim`` optimizer).
    """

    def __init__(self, net_with_loss, optimizer):
        if not hasattr(net_with_loss, "_loss_fn"):
            raise AttributeError(
                f"The net_with_loss must have a _loss_fn attribute (a WithLossCell), but "
                f"{type(net_with_loss).__name__} has none"
            )
        if not isinstance(net_with_loss._loss_fn, ELBO):
            raise TypeError("The loss function for variational inference must be ELBO.")
        if not isinstance(optimizer, (torch.optim.Optimizer, pyro.optim.PyroOptim)):
            raise TypeError(
                "The optimizer must be Cell type (a torch.optim.Optimizer in ppmodels), but got "
                f"{type(optimizer).__name__}"
            )
        self.net_with_loss = net_with_loss
        self.optimizer = optimizer
        self._loss = 0.0
        self.result = None

    def _backbone(self):
        net = self.net_with_loss
        return net.backbone_network if hasattr(net, "backbone_network") else net._backbone

    def run(self, train_dataset, epochs=10, *, seed=None, progress=None, compile=None, callbacks=()):
        """Train for ``epochs`` and return the trained backbone network.

        :param train_dataset: any re-iterable of batches: dicts with 'image'/'label',
            ``(x, y)`` tuples, tensors, a DataLoader, or a dataset with ``create_dict_iterator``.
        :param int seed: seed Pyro and torch (ppmodels).
        :param progress: progress bar: True, False, or None for "only on a terminal" (ppmodels).
        :param str compile: ``"graph"`` or ``"inductor"``: train with fit's compiled step (ppmodels).
        :param callbacks: :class:`ppmodels.infer.Callback` instances for fit (ppmodels).
        """
        epochs = check_positive_int(epochs, "epochs")
        source = MindSporeBatches(train_dataset)
        batches = Batches(source, source.num_data())
        if batches.num_data == 0:
            raise ValueError("The train_dataset is empty: it holds no samples")
        loss_fn = self.net_with_loss._loss_fn
        backbone = self._backbone()
        prefer_fused_adam(self.optimizer)  # MindSpore's Adam is one fused kernel; torch's default is not
        plain = type(loss_fn).forward is ELBO.forward and type(self.net_with_loss).forward is WithLossCell.forward
        common = {
            "epochs": epochs,
            "optimizer": self.optimizer,
            "seed": seed,
            "progress": progress,
            "compile": compile,
            "callbacks": list(callbacks),
        }
        if plain and isinstance(backbone, VAE):
            estimator = {
                "elbo": loss_fn.estimator,
                "num_particles": loss_fn.num_particles,
                "vectorize_particles": loss_fn.vectorize_particles,
            }
            self.result = _infer.fit(backbone.core(loss_fn.output_prior), batches, **common, **estimator)
            offset = 0.0
            if loss_fn.output_prior == "Normal":  # -log N(x | r, 1/2) = (x - r)^2 + log(pi) / 2
                x0 = next(iter(batches))[0]
                offset = x0[0].numel() * 0.5 * math.log(math.pi)
            self._loss = np.float64(self.result.train_loss[-1] - offset)
        else:
            self.result = _infer.fit(_LossPair(self.net_with_loss), batches, **common)
            self._loss = np.float64(self.result.train_loss[-1])
        if isinstance(backbone, nn.Module):
            backbone.train()
        return backbone

    def get_train_loss(self):
        """The last epoch's loss per sample (sum of squared error plus KL, MindSpore's
        convention); ``0.0`` before :meth:`run`."""
        return self._loss
