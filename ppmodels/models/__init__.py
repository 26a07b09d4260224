"""Model/guide pairs."""

from ._plate import DataSizeMixin
from .regression import BayesianLinearRegression, BayesianLogisticRegression, BayesianMLPRegression
from .vae import CVAE, LIKELIHOODS, VAE

__all__ = [
    "BayesianLinearRegression",
    "BayesianLogisticRegression",
    "BayesianMLPRegression",
    "CVAE",
    "DataSizeMixin",
    "LIKELIHOODS",
    "VAE",
]
