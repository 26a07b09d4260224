"""``toolbox``: MindSpore's ``UncertaintyEvaluation`` and ``VAEAnomalyDetection`` on ppmodels.

Both keep MindSpore's signatures, validation and output shapes; what they compute differs
where MindSpore is wrong (see ``docs/facade.md``):

- ``UncertaintyEvaluation`` takes its uncertainty from the posterior of a Bayesian version
  of the model (:func:`ppmodels.models.to_bayesian`, starting at the model's weights and
  trained ``epochs`` epochs with Pyro's SVI), not from an MC-dropout copy (MindSpore 1.0
  inserts no dropout, so its epistemic uncertainty is zero).
- ``VAEAnomalyDetection`` scores every sample (MindSpore returns one score per batch).
"""

from __future__ import annotations

import copy
import math
import numbers
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ... import infer as _infer
from ... import models as _models
from ... import toolbox as _toolbox
from ...infer.training.data import Batches
from .._checks import check_positive_int
from ..cells import WithLossCell
from ..dpn import VAE
from ..infer import ELBO, SVI
from ..infer._variational import MindSporeBatches

_TASKS = ("regression", "classification")


def _as_tensor(value, name):
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"`{name}` must be a Tensor (or a numpy array), but got {type(value).__name__}")
    return value.float() if not value.is_floating_point() else value


def _heteroscedastic_copy(model):
    """A copy of ``model`` whose last Linear layer gives twice the outputs: the original means
    (its weights copied) and raw scales (initial sd 1)."""
    model = copy.deepcopy(model)
    last = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ValueError("The model has not Dense Layer, it can not evaluate aleatoric uncertainty so far.")
    name, layer = last[-1]
    head = nn.Linear(layer.in_features, 2 * layer.out_features, device=layer.weight.device)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[: layer.out_features] = layer.weight
        head.bias.fill_(math.log(math.expm1(1.0)))
        head.bias[: layer.out_features] = layer.bias if layer.bias is not None else 0.0
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, head)
    return model


class UncertaintyEvaluation:
    """``UncertaintyEvaluation(model, train_dataset, task_type, num_classes=None, epochs=1,
    epi_uncer_model_path=None, ale_uncer_model_path=None, save_model=False)``.

    :param model: the trained deterministic network (a ``torch.nn.Module``; copied, never changed).
    :param train_dataset: batches of ``(image, label)``: dicts with ``'image'``/``'label'``,
        tuples, a DataLoader or a dataset with ``create_dict_iterator``.
    :param task_type: ``'classification'`` or ``'regression'``.
    :param num_classes: required for classification.
    :param epochs: epochs of SVI for the Bayesian version of the model.
    :param epi_uncer_model_path: with ``save_model=True``, a folder where
        ``checkpoint_epi_uncer_model.pt`` is written; with ``save_model=False``, a checkpoint
        file to load instead of training.
    :param ale_uncer_model_path: the same for ``checkpoint_ale_uncer_model.pt``.

    The Bayesian model is trained lazily, on the first ``eval_*`` call; one model serves both
    methods (for regression its last Linear layer is doubled to predict a scale too).
    """

    def __init__(
        self,
        model,
        train_dataset,
        task_type,
        num_classes=None,
        epochs=1,
        epi_uncer_model_path=None,
        ale_uncer_model_path=None,
        save_model=False,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError("The model must be Cell type.")
        if task_type not in _TASKS:
            raise ValueError("The task should be regression or classification.")
        if task_type == "classification":
            self.num_classes = check_positive_int(num_classes, "num_classes")
        else:
            self.num_classes = None
        self.epochs = check_positive_int(epochs, "epochs")
        if not isinstance(save_model, bool):
            raise TypeError(f"The type of `save_model` should be `bool`, but got {type(save_model).__name__}")
        if save_model and (epi_uncer_model_path is None or ale_uncer_model_path is None):
            raise ValueError(
                "If save_model is True, the epi_uncer_model_path and ale_uncer_model_path should not be None."
            )
        for path, name in (
            (epi_uncer_model_path, "epi_uncer_model_path"),
            (ale_uncer_model_path, "ale_uncer_model_path"),
        ):
            if path is not None and not isinstance(path, (str, Path)):
                raise TypeError(f"`{name}` must be a path (str), but got {type(path).__name__}")
            if path is not None and not save_model and not Path(path).is_file():
                raise FileNotFoundError(f"`{name}`: no checkpoint file at {path} (save_model=False loads it)")
        self.model, self.train_dataset, self.task_type = model, train_dataset, task_type
        self.epi_uncer_model_path, self.ale_uncer_model_path = epi_uncer_model_path, ale_uncer_model_path
        self.save_model = save_model
        self._bnn = None

    def _build(self):
        if self.task_type == "classification":
            return _models.to_bayesian(copy.deepcopy(self.model), likelihood="categorical")
        return _models.to_bayesian(_heteroscedastic_copy(self.model), likelihood="heteroscedastic")

    def bayesian_model(self):
        """The Bayesian version of the model (built and trained, or loaded, on first use)."""
        if self._bnn is not None:
            return self._bnn
        bnn = self._build()
        load_from = None if self.save_model else (self.epi_uncer_model_path or self.ale_uncer_model_path)
        if load_from is not None:
            _infer.load(load_from, into=bnn)
        else:
            if self.train_dataset is None:
                raise ValueError("The train dataset should not be None when evaluating uncertainty.")
            label_dtype = torch.int64 if self.task_type == "classification" else torch.float32
            source = MindSporeBatches(self.train_dataset, label_dtype)
            batches = Batches(source, source.num_data())
            if self.task_type == "regression":
                batches = Batches(_Reshaped(batches, self._out_dim(bnn)), batches.num_data)
            _infer.fit(bnn, batches, epochs=self.epochs, lr=1e-3, progress=False)
            if self.save_model:
                for folder, stem in (
                    (self.epi_uncer_model_path, "checkpoint_epi_uncer_model"),
                    (self.ale_uncer_model_path, "checkpoint_ale_uncer_model"),
                ):
                    Path(folder).mkdir(parents=True, exist_ok=True)
                    _infer.save(Path(folder) / f"{stem}.pt", bnn)
        self._bnn = bnn.eval()
        return bnn

    @staticmethod
    def _out_dim(bnn):
        last = [m for m in bnn._template.modules() if isinstance(m, nn.Linear)][-1]
        return last.out_features // 2

    def _predict(self, eval_data):
        x = _as_tensor(eval_data, "eval_data")
        bnn = self.bayesian_model()
        return bnn.predict(x.to(bnn.posterior.loc[0].device), num_samples=50, batch_size=1024)

    def eval_epistemic_uncertainty(self, eval_data):
        """Per input and output, the variance over posterior draws of the predicted class
        probabilities (classification, ``(N, num_classes)``) or of the predicted mean
        (regression, ``(N, out)``), as a numpy array."""
        return self._predict(eval_data).samples.var(0, unbiased=False).cpu().numpy()

    def eval_aleatoric_uncertainty(self, eval_data):
        """Per input, ``(N,)``: the expected entropy of the predicted class distribution
        (classification, nats) or the expected predicted noise variance, averaged over the
        outputs (regression)."""
        pred = self._predict(eval_data)
        if self.task_type == "classification":
            return _toolbox.classification_uncertainty(pred.samples).aleatoric.cpu().numpy()
        return pred.scale_samples.pow(2).mean(0).flatten(1).mean(1).cpu().numpy()


class _Reshaped:
    """Regression labels as ``(N, out)`` float tensors for the heteroscedastic likelihood."""

    def __init__(self, batches, out):
        self.batches, self.out = batches, out

    def __len__(self):
        return len(self.batches.source)

    def __iter__(self):
        for x, y in self.batches:
            yield x, y.reshape(len(y), self.out)


class VAEAnomalyDetection:
    """``VAEAnomalyDetection(encoder, decoder, hidden_size=400, latent_size=20)``: a
    :class:`~ppmodels.probability.dpn.VAE` trained with ``ELBO`` and ``SVI``; every sample is
    scored by the Euclidean distance between it and its reconstruction (decoded from the
    posterior mean, so scores are reproducible). MindSpore returns one score for a whole
    batch; here ``predict_outlier_score`` returns one per sample."""

    def __init__(self, encoder, decoder, hidden_size=400, latent_size=20):
        self.vae = VAE(encoder, decoder, hidden_size, latent_size)

    def train(self, train_dataset, epochs=5):
        """Train with ``ELBO`` and Adam (lr 1e-3) through ``SVI``; returns the VAE."""
        optimizer = torch.optim.Adam(self.vae.trainable_params(), lr=0.001)
        vi = SVI(net_with_loss=WithLossCell(self.vae, ELBO()), optimizer=optimizer)
        self.vae = vi.run(train_dataset, epochs)
        return self.vae

    @torch.no_grad()
    def predict_outlier_score(self, sample_x):
        """``sqrt(sum((x - reconstruction)^2))`` per sample: a numpy array of shape ``(N,)``;
        for a batch of one, a Python float (MindSpore's return for a single sample)."""
        if not isinstance(sample_x, torch.Tensor):
            raise TypeError("The sample_x must be Tensor type.")
        core = self.vae.core()
        self.vae.eval()
        mu, _ = core.encoder(sample_x)
        recon = core.decoder(mu).reshape(sample_x.shape)
        scores = (sample_x - recon).flatten(1).pow(2).sum(1).sqrt().cpu().numpy()
        return float(scores[0]) if len(scores) == 1 else scores

    def predict_outlier(self, sample_x, threshold=100.0):
        """``score >= threshold`` per sample (numpy bools); for a batch of one, a Python bool, so
        that MindSpore's ``if ood.predict_outlier(x):`` reads as it does there. ``threshold`` is a
        positive number; an int is accepted (MindSpore raises TypeError for one)."""
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
            raise TypeError(f"The `threshold` must be a positive float, but got {type(threshold).__name__}")
        if not threshold > 0:
            raise ValueError(f"The `threshold` must be a positive float, but got {threshold}")
        flags = np.asarray(self.predict_outlier_score(sample_x)) >= float(threshold)
        return bool(flags) if flags.ndim == 0 else flags


__all__ = ["UncertaintyEvaluation", "VAEAnomalyDetection"]
