"""Uncertainty and calibration from posterior samples."""

from .calibration import (
    Reliability,
    accuracy,
    brier_score,
    expected_calibration_error,
    interval_coverage,
    mixture_quantile,
    negative_log_likelihood,
    reliability,
)
from .uncertainty import Uncertainty, classification_uncertainty, regression_uncertainty

__all__ = [
    "Reliability",
    "Uncertainty",
    "accuracy",
    "brier_score",
    "classification_uncertainty",
    "expected_calibration_error",
    "interval_coverage",
    "mixture_quantile",
    "negative_log_likelihood",
    "regression_uncertainty",
    "reliability",
]
