"""Inference on Pyro programs: training, MCMC, VI against MCMC, and the diagnostics that say
whether an answer can be trusted. Import from here; the subpackages hold the units:

- :mod:`~ppmodels.infer.training`: :func:`fit` and its units (options, data, the step and its
  compiled form, ELBO estimators by name, callbacks, checkpoints, distributed training);
- :mod:`~ppmodels.infer.vi`: guide families (Laplace-whitened Gaussians), discrete sites after training;
- :mod:`~ppmodels.infer.sampling`: :func:`mcmc` (NUTS, HMC, ChEES; Pyro's own MCMC one option away);
- :mod:`~ppmodels.infer.density`: a model's log density compiled, the floor MCMC and VI stand on;
- :mod:`~ppmodels.infer.graphs`: the graph machinery the compiled step and the density share;
- :mod:`~ppmodels.infer.comparison`: :func:`compare`, :func:`compare_elbos`, :func:`sbc`;
- :mod:`~ppmodels.infer.diagnostics`: PSIS, LOO, a trained pair's ELBO and log-likelihood;
- :mod:`~ppmodels.infer.program`: a user's Pyro program as every engine reads it;
- :mod:`~ppmodels.infer.initialization`, :mod:`~ppmodels.infer.errors`: initial values for flat
  priors, and the errors a user may catch by type.
"""

from .comparison import (
    GUIDES,
    KERNELS,
    Comparison,
    DrawsMethod,
    ElboComparison,
    SBCResult,
    compare,
    compare_elbos,
    gradient_variance,
    sbc,
)
from .diagnostics import (
    LOOResult,
    PerDatumPSIS,
    PSISResult,
    elbo,
    log_likelihood,
    log_weights,
    pareto_smooth,
    pointwise,
    psis,
    psis_loo,
    psis_per_datum,
)
from .errors import EagerFallbackWarning, ImproperPosteriorError, NonFiniteLossError
from .sampling import MCMCResult, mcmc
from .training import (
    ELBO_NAMES,
    ESTIMATORS,
    Callback,
    ClipParams,
    EarlyStopping,
    EnumELBO,
    FitResult,
    KwargSchedule,
    Objective,
    ProjectParams,
    StopOnConvergence,
    TensorBoard,
    TrainState,
    fit,
    get_elbo,
    linear_schedule,
    load,
    make_optimizer,
    save,
)
from .vi import infer_discrete, laplace_guide

__all__ = [
    "Callback",
    "ClipParams",
    "Comparison",
    "DrawsMethod",
    "ELBO_NAMES",
    "ESTIMATORS",
    "EagerFallbackWarning",
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
