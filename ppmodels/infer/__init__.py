"""Inference: ELBO estimators by name, the training engine, evaluation and checkpoints."""

from .checkpoint import load, save
from .compare import GUIDES, KERNELS, Comparison, compare
from .compare_elbos import ElboComparison, compare_elbos, gradient_variance
from .elbo import ELBO_NAMES, ESTIMATORS, Objective, get_elbo
from .evaluate import elbo, log_likelihood, log_weights
from .fit import FitResult, NonFiniteLossError, fit, make_optimizer

__all__ = [
    "Comparison",
    "ELBO_NAMES",
    "ESTIMATORS",
    "ElboComparison",
    "FitResult",
    "GUIDES",
    "KERNELS",
    "NonFiniteLossError",
    "Objective",
    "compare",
    "compare_elbos",
    "elbo",
    "fit",
    "get_elbo",
    "gradient_variance",
    "load",
    "log_likelihood",
    "log_weights",
    "make_optimizer",
    "save",
]
