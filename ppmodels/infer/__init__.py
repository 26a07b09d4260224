"""Inference: ELBO estimators by name, the training engine, evaluation and checkpoints."""

from .calibration import SBCResult, sbc
from .callbacks import (
    Callback,
    ClipParams,
    EarlyStopping,
    KwargSchedule,
    ProjectParams,
    TensorBoard,
    TrainState,
    linear_schedule,
)
from .checkpoint import load, save
from .compare import GUIDES, KERNELS, Comparison, compare
from .compare_elbos import ElboComparison, compare_elbos, gradient_variance
from .convergence import StopOnConvergence
from .discrete import infer_discrete
from .elbo import ELBO_NAMES, ESTIMATORS, EnumELBO, Objective, get_elbo
from .errors import ImproperPosteriorError, NonFiniteLossError
from .evaluate import elbo, log_likelihood, log_weights, psis_per_datum
from .fit import fit
from .laplace import laplace_guide
from .loo import LOOResult, pointwise, psis_loo
from .methods import DrawsMethod
from .optim import make_optimizer
from .psis import PerDatumPSIS, PSISResult, pareto_smooth, psis
from .result import FitResult
from .sampling import MCMCResult, mcmc

__all__ = [
    "Callback",
    "ClipParams",
    "Comparison",
    "DrawsMethod",
    "ELBO_NAMES",
    "ESTIMATORS",
    "EarlyStopping",
    "ElboComparison",
    "EnumELBO",
    "FitResult",
    "GUIDES",
    "ImproperPosteriorError",
    "KERNELS",
    "KwargSchedule",
    "LOOResult",
    "MCMCResult",
    "NonFiniteLossError",
    "Objective",
    "PSISResult",
    "PerDatumPSIS",
    "ProjectParams",
    "SBCResult",
    "StopOnConvergence",
    "TensorBoard",
    "TrainState",
    "compare",
    "compare_elbos",
    "elbo",
    "fit",
    "get_elbo",
    "gradient_variance",
    "infer_discrete",
    "laplace_guide",
    "linear_schedule",
    "load",
    "log_likelihood",
    "log_weights",
    "make_optimizer",
    "mcmc",
    "pareto_smooth",
    "pointwise",
    "psis",
    "psis_loo",
    "psis_per_datum",
    "save",
    "sbc",
]
