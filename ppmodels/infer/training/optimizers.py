"""The optimizer fit trains with: built from what the user gave (``None`` for Adam, a class or
factory, a ``pyro.optim`` optimizer, a built ``torch.optim.Optimizer``), with torch's fused
Adam kernel where it applies."""

from __future__ import annotations

import pyro.optim
import torch

from ..._validate import check_positive_float


def make_optimizer(optimizer, params, lr):
    """A torch optimizer over ``params`` from ``None`` (Adam), an optimizer class or factory,
    a ``pyro.optim`` optimizer, or an already built ``torch.optim.Optimizer``."""
    if optimizer is None:
        return _adam(params, check_positive_float(lr, "lr"))
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if isinstance(optimizer, pyro.optim.PyroOptim):
        args = optimizer.pt_optim_args
        if callable(args):
            raise TypeError(
                "a pyro.optim optimizer with per-parameter (callable) arguments is not supported by fit; "
                "pass a dict of arguments or a torch optimizer"
            )
        return optimizer.pt_optim_constructor(params, **dict(args))
    if callable(optimizer):
        built = optimizer(params)
        if not isinstance(built, torch.optim.Optimizer):
            raise TypeError(
                f"`optimizer` called on the parameters must return a torch.optim.Optimizer, "
                f"but returned {type(built).__name__}"
            )
        return built
    raise TypeError(
        "`optimizer` must be None (Adam), a torch.optim.Optimizer, an optimizer class or factory "
        f"taking the parameters, or a pyro.optim optimizer, but got {type(optimizer).__name__}"
    )


def _adam(params, lr):
    """Adam, with torch's fused kernel where this torch and device have it: one pass over the
    parameters and the moments instead of one per tensor and operation (the same update; a
    third of the time on the seed VAE's 1.6M parameters here), else torch's default."""
    params = list(params)
    return torch.optim.Adam(params, lr=lr, fused=True if _can_fuse(params) else None)


def prefer_fused_adam(optimizer) -> bool:
    """Give a torch ``Adam``/``AdamW`` that left its kernel to torch (``fused=None`` and
    ``foreach=None``, the defaults) torch's fused kernel, as :func:`_adam` does, when it has
    taken no step yet and its parameters can use it: the same update, one pass over memory.
    An explicit ``fused=False`` or ``foreach=...`` is kept. Returns whether it switched."""
    if type(optimizer) not in (torch.optim.Adam, torch.optim.AdamW) or optimizer.state:
        return False
    groups = optimizer.param_groups
    if any(g.get("fused") is not None or g.get("foreach") is not None for g in groups):
        return False
    if any(g.get("differentiable") or g.get("capturable") for g in groups):
        return False
    if not _can_fuse([p for g in groups for p in g["params"]]):
        return False
    for g in groups:
        g["fused"] = True
    optimizer.defaults["fused"] = True
    optimizer._step_supports_amp_scaling = True  # what the constructor sets for fused=True
    return True


def _can_fuse(params) -> bool:
    """Whether torch's fused Adam takes these parameters: floating point, on one CPU or CUDA
    device that this torch build has the fused kernel for (CPU from torch 2.4)."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        supported = set(_get_fused_kernels_supported_devices()) & {"cpu", "cuda"}
    except ImportError:  # a torch without the query: keep its default kernel
        return False
    devices = {p.device.type for p in params}
    return bool(params) and len(devices) == 1 and devices <= supported and all(p.is_floating_point() for p in params)


__all__ = ["make_optimizer", "prefer_fused_adam"]
