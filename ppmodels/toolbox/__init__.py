"""Uncertainty and calibration from posterior samples; anomaly scores and ROC;
neural-process evaluation."""

from .anomaly import ROC, SCORES, anomaly_scores, roc
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
from .functions import FunctionEvaluation, evaluate_neural_process, split_context
from .uncertainty import Uncertainty, classification_uncertainty, regression_uncertainty

__all__ = [
    "FunctionEvaluation",
    "ROC",
    "Reliability",
    "SCORES",
    "Uncertainty",
    "accuracy",
    "anomaly_scores",
    "brier_score",
    "classification_uncertainty",
    "evaluate_neural_process",
    "expected_calibration_error",
    "interval_coverage",
    "mixture_quantile",
    "negative_log_likelihood",
    "regression_uncertainty",
    "reliability",
    "roc",
    "split_context",
]
