"""Anomaly detection with a trained VAE: per-sample scores from the negative ELBO or the
negative importance-weighted log-likelihood, and ROC evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._validate import check_choice, check_tensor
from ..infer import elbo, log_likelihood

SCORES = ("elbo", "log_likelihood")


def anomaly_scores(pair, x, score="log_likelihood", num_samples=100, seed=None, batch_size=256, device=None):
    """One score per sample, higher = more anomalous, in nats: ``-ELBO(x)`` (``score="elbo"``,
    averaged over ``num_samples`` guide draws) or ``-log p(x)`` estimated by importance
    sampling with ``num_samples`` draws (``score="log_likelihood"``)."""
    check_choice(score, "score", SCORES)
    fn = elbo if score == "elbo" else log_likelihood
    return -fn(pair, x, num_samples=num_samples, batch_size=batch_size, seed=seed, device=device)


@dataclass
class ROC:
    """A receiver operating characteristic: false and true positive rates at each threshold,
    and the area under the curve."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auroc: float


def roc(normal_scores, anomalous_scores) -> ROC:
    """ROC of scores where higher means more anomalous (scikit-learn's ``roc_curve``)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    for value, name in ((normal_scores, "normal_scores"), (anomalous_scores, "anomalous_scores")):
        check_tensor(value, name)
        if value.dim() != 1 or len(value) == 0:
            raise ValueError(f"`{name}` must be a non-empty 1-D tensor, but got shape {tuple(value.shape)}")
    scores = torch.cat([normal_scores, anomalous_scores]).detach().cpu().double().numpy()
    labels = np.r_[np.zeros(len(normal_scores)), np.ones(len(anomalous_scores))]
    fpr, tpr, thresholds = roc_curve(labels, scores)
    return ROC(fpr, tpr, thresholds, float(roc_auc_score(labels, scores)))
