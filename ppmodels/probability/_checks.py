"""MindSpore's validation (``Validator.check_positive_int`` and friends), with its exception types."""

from __future__ import annotations

from .._validate import check_positive_int  # noqa: F401  (TypeError for non-int/bool, ValueError for <= 0)


def check_cell(value, what: str):
    import torch

    if not isinstance(value, torch.nn.Module):
        raise TypeError(f"{what} (a torch.nn.Module in ppmodels), but got {type(value).__name__}")
    return value
