"""Model/guide pairs."""

from ._plate import DataSizeMixin
from .bnn import BayesianLeNet5, BayesianNetwork, ConversionReport, Prediction, to_bayesian
from .mixture import GaussianMixture
from .neural_process import FunctionPrediction, NeuralProcess
from .regression import BayesianLinearRegression, BayesianLogisticRegression, BayesianMLPRegression
from .ssvae import SSVAE
from .vae import CVAE, LIKELIHOODS, VAE
from .vaegan import VAEGAN, sharpness

__all__ = [
    "BayesianLeNet5",
    "BayesianLinearRegression",
    "BayesianLogisticRegression",
    "BayesianMLPRegression",
    "BayesianNetwork",
    "CVAE",
    "ConversionReport",
    "DataSizeMixin",
    "FunctionPrediction",
    "GaussianMixture",
    "LIKELIHOODS",
    "NeuralProcess",
    "Prediction",
    "SSVAE",
    "VAE",
    "VAEGAN",
    "sharpness",
    "to_bayesian",
]
