"""fit's options as one frozen value: built from :func:`~ppmodels.infer.fit`'s keywords and
checked here, each on its own and every rule between them, before any work.

``fit``'s signature and docstring are the public contract; this is the one place that
checks it. A new option is one field here, its rule in :meth:`FitOptions.__post_init__`, and
the unit that acts on it reads ``options.NAME``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro.optim
import torch

from ..._validate import check_choice, check_device, check_nonnegative_int, check_positive_float, check_positive_int
from ..graphs.backends import COMPILE_MODES
from .callbacks import Callback
from .optimizers import make_optimizer


@dataclass(frozen=True)
class FitOptions:
    """Every keyword of :func:`~ppmodels.infer.fit` but the pair and its data, checked.
    ``kwargs`` is a dict (``{}`` when not given) and ``device`` a ``torch.device`` or ``None``."""

    kwargs: dict | None = None
    epochs: int = 10
    batch_size: int | None = None
    elbo: object = "trace"
    num_particles: int | None = None
    vectorize_particles: bool | None = None
    optimizer: object = None
    lr: float = 1e-3
    val_data: object = None
    seed: int | None = None
    device: object = None
    progress: object = None
    checkpoint: object = None
    resume: object = None
    shuffle: bool | None = None
    validate: str = "first"
    scheduler: object = None
    callbacks: tuple = ()
    distributed: bool = False
    compile: str | None = None
    nan_check_every: int = 1

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen: normalise once)
        set_("kwargs", _check_kwargs(self.kwargs))
        check_positive_int(self.epochs, "epochs")
        check_choice(self.validate, "validate", ["first", "always", "never"])
        cbs = self.callbacks
        if not isinstance(cbs, (list, tuple)) or not all(isinstance(c, Callback) for c in cbs):
            got = [type(c).__name__ for c in cbs] if isinstance(cbs, (list, tuple)) else type(cbs).__name__
            raise TypeError(f"`callbacks` must be a list of ppmodels.infer.Callback instances, but got {got}")
        set_("callbacks", tuple(cbs))
        if self.progress not in (None, True, False, "log"):
            raise ValueError(f"`progress` must be True, False, None or 'log', but got {self.progress!r}")
        if self.scheduler is not None and not callable(self.scheduler):
            raise TypeError(
                f"`scheduler` must be a factory optimizer -> LRScheduler, but got {type(self.scheduler).__name__}"
            )
        opt = self.optimizer
        if opt is not None and not (isinstance(opt, (torch.optim.Optimizer, pyro.optim.PyroOptim)) or callable(opt)):
            make_optimizer(opt, [], self.lr)  # raises the TypeError now, before any work
        if opt is None:
            check_positive_float(self.lr, "lr")
        if self.compile is not None:
            check_choice(self.compile, "compile", list(COMPILE_MODES))
        set_("nan_check_every", check_positive_int(self.nan_check_every, "nan_check_every"))
        if self.compile is not None and self.validate == "always":
            raise ValueError(
                "validate='always' runs Pyro's argument checks at every step, in Python, which a compiled graph "
                "cannot: use validate='first' (the default: the first, eager step is checked) with compile"
            )
        if self.compile is not None and self.distributed:
            raise ValueError(
                "fit(distributed=True) runs eager steps: DistributedDataParallel's gradient hooks are not part of a "
                "traced graph; use compile=None with distributed=True"
            )
        set_("device", check_device(self.device))
        if self.seed is not None:
            check_nonnegative_int(self.seed, "seed")

    @classmethod
    def for_fit(cls, pair, data, **keywords) -> FitOptions:
        """The options of ``fit(pair, data, **keywords)``, with the rules that involve the pair
        and the data."""
        if keywords.get("distributed") and not isinstance(pair, torch.nn.Module):
            raise TypeError(
                "fit(distributed=True) needs the pair to be a torch.nn.Module (its parameters are synchronised)"
            )
        options = cls(**keywords)
        if isinstance(data, dict):
            clash = sorted(set(data) & set(options.kwargs))
            if clash:
                raise ValueError(f"`data` (a dict of keyword arguments) and `kwargs` both give {clash}; give each once")
        return options


def _check_kwargs(kwargs) -> dict:
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise TypeError(
            "`kwargs` must be a dict of keyword arguments for the model and guide (names to values), but got "
            f"{type(kwargs).__name__}"
        )
    if "subsample" in kwargs:
        raise ValueError("`kwargs` may not hold 'subsample': fit passes each batch's indices there itself")
    return dict(kwargs)


__all__ = ["FitOptions"]
