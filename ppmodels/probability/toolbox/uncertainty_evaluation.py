"""MindSpore's ``toolbox/uncertainty_evaluation.py`` path."""

from ._toolbox import UncertaintyEvaluation

__all__ = ["UncertaintyEvaluation"]
