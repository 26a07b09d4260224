"""Model/guide pairs."""

from ._plate import DataSizeMixin
from .bnn import BayesianLeNet5, BayesianNetwork, ConversionReport, Prediction, to_bayesian
from .regression import BayesianLinearRegression, BayesianLogisticRegression, BayesianMLPRegression
from .vae import CVAE, LIKELIHOODS, VAE
from .vaegan import VAEGAN, sharpness

__all__ = [
    "BayesianLeNet5",
    "BayesianNetwork",
    "ConversionReport",
    "Prediction",
    "to_bayesian",
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
