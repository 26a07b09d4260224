"""Argument checks shared by every public entry point.

Each check raises ``TypeError`` for a value of the wrong kind and ``ValueError`` for a
value of the right kind outside the accepted range. Messages name the argument, what was
received and what is accepted.
"""

from __future__ import annotations

import numbers
from typing import Iterable

import torch


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"{value!r} ({type(value).__name__})"


def check_positive_int(value, name: str) -> int:
    """Return ``value`` if it is an ``int`` > 0 (``bool`` is refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be a positive int, but got {_describe(value)}")
    if value <= 0:
        raise ValueError(f"`{name}` must be a positive int, but got {value}")
    return int(value)


def check_nonnegative_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be a non-negative int, but got {_describe(value)}")
    if value < 0:
        raise ValueError(f"`{name}` must be a non-negative int, but got {value}")
    return int(value)


def check_positive_float(value, name: str) -> float:
    """Return ``float(value)`` if it is a finite real number > 0 (``bool`` is refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a positive number, but got {_describe(value)}")
    value = float(value)
    if not value > 0 or value == float("inf"):
        raise ValueError(f"`{name}` must be a positive finite number, but got {value}")
    return value


def check_choice(value, name: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    if not isinstance(value, str):
        raise TypeError(f"`{name}` must be one of {choices}, but got {_describe(value)}")
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, but got {value!r}")
    return value


def check_module(value, name: str) -> torch.nn.Module:
    if not isinstance(value, torch.nn.Module):
        raise TypeError(f"`{name}` must be a torch.nn.Module, but got {_describe(value)}")
    return value


def check_tensor(value, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, but got {_describe(value)}")
    return value


def check_finite(tensor: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` naming the first sample (index along dim 0) holding NaN or inf."""
    if tensor.is_floating_point() or tensor.is_complex():
        finite = torch.isfinite(tensor.reshape(tensor.shape[0], -1) if tensor.dim() else tensor)
        if not bool(finite.all()):
            if tensor.dim() == 0:
                raise ValueError(f"`{name}` is not finite: {tensor.item()}")
            bad_rows = (~finite.all(dim=1)).nonzero()
            first = int(bad_rows[0, 0])
            count = int(bad_rows.shape[0])
            raise ValueError(
                f"`{name}` holds NaN or infinite values: the first bad sample is index {first} "
                f"({count} bad sample(s) in all). Clean or drop them before training."
            )


def check_device(device, name: str = "device"):
    """``None`` or a ``torch.device`` this torch build has: ``'cpu'``, ``'cuda'``, ``'cuda:1'``..."""
    if device is None:
        return None
    if isinstance(device, str):
        try:
            device = torch.device(device)
        except RuntimeError:
            raise ValueError(
                f"`{name}` must be a torch device such as 'cpu', 'cuda' or 'cuda:0', but got {device!r}"
            ) from None
    elif not isinstance(device, torch.device):
        raise TypeError(f"`{name}` must be a torch device or its name ('cpu', 'cuda'), but got {_describe(device)}")
    reason = device_unavailable(device)
    if reason is not None:
        raise ValueError(f"`{name}`={str(device)!r}: {reason}; use 'cpu'")
    return device


def device_unavailable(device) -> str | None:
    """Why this torch build and machine cannot run on ``device`` (a ``torch.device``), or None."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return f"this torch build ({torch.__version__}) has no CUDA device"
        if device.index is not None and device.index >= torch.cuda.device_count():
            return f"there are {torch.cuda.device_count()} CUDA devices"
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        return f"this torch build ({torch.__version__}) has no MPS device"
    return None
