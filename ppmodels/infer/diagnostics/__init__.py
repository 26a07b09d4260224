"""Did it work, without MCMC: PSIS k-hat of a trained guide, PSIS-LOO with a k per
observation, and a trained pair's per-sample ELBO and importance-weighted log-likelihood.

- :mod:`~ppmodels.infer.diagnostics.pareto`: Pareto smoothing of importance weights (the numerics);
- :mod:`~ppmodels.infer.diagnostics.guide_psis`: a guide against its model's posterior;
- :mod:`~ppmodels.infer.diagnostics.loo`: leave-one-out cross-validation by PSIS;
- :mod:`~ppmodels.infer.diagnostics.evaluate`: a trained pair's ELBO and log-likelihood per sample.
"""

from .evaluate import elbo, log_likelihood, log_weights, psis_per_datum
from .guide_psis import PerDatumPSIS, PSISResult, psis
from .loo import LOOResult, pointwise, psis_loo
from .pareto import pareto_smooth

__all__ = [
    "LOOResult",
    "PSISResult",
    "PerDatumPSIS",
    "elbo",
    "log_likelihood",
    "log_weights",
    "pareto_smooth",
    "pointwise",
    "psis",
    "psis_loo",
    "psis_per_datum",
]
