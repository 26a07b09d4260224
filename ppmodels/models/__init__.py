"""Model/guide pairs."""

from ._plate import DataSizeMixin
from .regression import BayesianLinearRegression, BayesianLogisticRegression, BayesianMLPRegression
from .vae import CVAE, LIKELIHOODS, VAE
from .vaegan import VAEGAN, sharpness

__all__ = [
    "BayesianLinearRegression",
    "BayesianLogisticRegression",
    "BayesianMLPRegression",
    "CVAE",
    "DataSizeMixin",
    "LIKELIHOODS",
    "VAE",
    "VAEGAN",
    "sharpness",
]
