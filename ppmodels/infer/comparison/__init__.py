"""Checking answers: VI against MCMC on one model, ELBO estimators against each other, and
simulation-based calibration of any method.

- :mod:`~ppmodels.infer.comparison.driver`: :func:`compare`, from its options to its report;
- :mod:`~ppmodels.infer.comparison.options`: compare's keywords as one frozen, checked value;
- :mod:`~ppmodels.infer.comparison.problem`: what compare knows of a model before any method runs;
- :mod:`~ppmodels.infer.comparison.methods`, :mod:`~ppmodels.infer.comparison.guides`,
  :mod:`~ppmodels.infer.comparison.kernels`: one class per kind of method, and how a user names one;
- :mod:`~ppmodels.infer.comparison.method_checks`: PSIS and LOO after each method;
- :mod:`~ppmodels.infer.comparison.report`, :mod:`~ppmodels.infer.comparison.arviz_export`:
  the scores, tables and exports;
- :mod:`~ppmodels.infer.comparison.elbo_comparison`: estimators on one pair, same start and budget;
- :mod:`~ppmodels.infer.comparison.sbc_runs`, :mod:`~ppmodels.infer.comparison.sbc_ranks`:
  SBC's simulations (compare's methods, run on data the model makes) and its rank tests.
"""

from .driver import compare
from .elbo_comparison import ElboComparison, compare_elbos, gradient_variance
from .guides import GUIDES
from .kernels import KERNELS
from .methods import DrawsMethod, method_of
from .options import CompareOptions
from .report import Comparison, MethodResult
from .sbc_ranks import SBCResult, ecdf_band
from .sbc_runs import sbc, simulate

__all__ = [
    "CompareOptions",
    "Comparison",
    "DrawsMethod",
    "ElboComparison",
    "GUIDES",
    "KERNELS",
    "MethodResult",
    "SBCResult",
    "compare",
    "compare_elbos",
    "ecdf_band",
    "gradient_variance",
    "method_of",
    "sbc",
    "simulate",
]
