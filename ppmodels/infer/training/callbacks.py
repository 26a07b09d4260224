"""Callbacks: what ``fit`` does around its steps, one small class per need.

``fit`` is a short loop over steps; everything else — the NaN guard, the learning-rate
schedule, validation, checkpoints, the progress display, early stopping, parameter
clipping, keyword schedules, TensorBoard — is a :class:`Callback` with a few hooks, each
given the :class:`TrainState` explicitly. The callbacks a user passes are here; those fit
makes from its own arguments are in :mod:`~ppmodels.infer.training.engine_callbacks`.

=====================  =======================================================================
hook                   when
=====================  =======================================================================
``on_fit_start``       once, before the first step (after a resume has restored the state)
``on_epoch_start``     before each epoch
``on_step_start``      before each step; may set ``state.kwargs`` (extra model/guide keywords)
``on_gradients``       after the loss and its gradients, before the optimizer updates
``on_step_end``        after the update
``on_epoch_end``       after each epoch (``state.result`` holds its losses)
``on_fit_end``         once, at the end (also after an error: ``state.error`` is set)
=====================  =======================================================================

A callback stops training with ``state.stop("reason")``; the loop ends after the current
step (or epoch, if called at its end). A callback with state worth keeping across a resume
defines ``state_dict()``/``load_state_dict()``; checkpoints hold it.
"""

from __future__ import annotations

import fnmatch
import math

import torch

from ..._validate import check_choice, check_nonnegative_int, check_positive_float, check_positive_int


class Callback:
    """Base class: every hook does nothing.

    :cvar after_checkpoint: run this callback's hooks after fit's checkpoint is written (and
        not before, as other callbacks are): for callbacks that report what the checkpoint
        holds, such as a metrics file, which must never claim an epoch the checkpoint lacks.
        Their own state is not saved in the checkpoint.
    """

    after_checkpoint = False

    def on_fit_start(self, state):
        pass

    def on_epoch_start(self, state):
        pass

    def on_step_start(self, state):
        pass

    def on_gradients(self, state):
        pass

    def on_step_end(self, state):
        pass

    def on_epoch_end(self, state):
        pass

    def on_fit_end(self, state):
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class CallbackList(list):
    """fit's callbacks in order: ``callbacks.on_epoch_end(state)`` calls each one's hook."""

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(state):
            for cb in self:
                getattr(cb, hook)(state)

        return call

    def state_dicts(self) -> list:
        """The states a checkpoint keeps: those of callbacks that define ``state_dict`` (and
        run before the checkpoint), with their types."""
        return [{"type": type(cb).__name__, "state": cb.state_dict()} for cb in self if _keeps_state(cb)]

    def load_state_dicts(self, saved: list) -> None:
        """Give each callback its state from :meth:`state_dicts` (matched in order and type)."""
        for cb, entry in zip([cb for cb in self if _keeps_state(cb)], saved):
            if entry["type"] == type(cb).__name__:
                cb.load_state_dict(entry["state"])


def _keeps_state(cb) -> bool:
    return type(cb).state_dict is not Callback.state_dict and not cb.after_checkpoint


class TrainState:
    """What callbacks see: the pair, the optimizer, the position in training and the step's loss.

    :ivar pair: the pair being trained (an ``nn.Module``; a wrapper for function pairs).
    :ivar optimizer: the torch optimizer (``None`` until the first step has built it).
    :ivar result: the :class:`~ppmodels.infer.FitResult` being filled.
    :ivar epoch: the current epoch, from 0.
    :ivar epochs: the number of epochs asked for.
    :ivar step: steps completed before this one, over the whole run (from 0).
    :ivar step_in_epoch: the step's index within its epoch.
    :ivar batch: the step's ``(args, kwargs)`` as the model receives them.
    :ivar kwargs: extra keyword arguments for this step's model and guide; callbacks
        set them in ``on_step_start`` (see :class:`KwargSchedule`).
    :ivar loss: the step's loss as the estimator returned it (a float or a 0-d tensor).
    :ivar num_data: the size of the training data set.
    """

    def __init__(self, pair, result, epochs, num_data, trained=None):
        self.pair, self.result, self.epochs, self.num_data = pair, result, epochs, num_data
        self.optimizer = None
        self.epoch = self.step = self.step_in_epoch = 0
        self.batch = None
        self.batch_size = 0
        self.kwargs = {}
        self.loss = None
        self.stop_reason = None
        self.error = None
        self._trained = trained  # () -> [(name, tensor)]: what the optimizer trains

    @property
    def loss_value(self) -> float:
        """The step's loss as a Python float (a device synchronisation on a GPU)."""
        value = self.loss
        return float(value.item() if isinstance(value, torch.Tensor) else value)

    def stop(self, reason: str = "stopped by a callback") -> None:
        """Stop training after the current step (or epoch, when called at its end)."""
        self.stop_reason = str(reason)

    @property
    def stopping(self) -> bool:
        return self.stop_reason is not None

    def named_parameters(self) -> list:
        """``(name, tensor)`` for every tensor the optimizer trains: module parameters by their
        path in the pair, ``pyro.param`` sites by their name (the unconstrained tensor)."""
        return self._trained() if self._trained is not None else list(self.pair.named_parameters())


# -- built-in callbacks users add ------------------------------------------------------
class EarlyStopping(Callback):
    """Stop when the epoch loss has stopped improving: an epoch improves when it is below the
    best so far by more than ``rtol`` times the best's magnitude (a relative-ELBO tolerance);
    after ``patience`` epochs without improvement, training stops.

    :param float rtol: relative improvement that counts (default 1e-4).
    :param int patience: epochs without improvement before stopping (default 5).
    :param str monitor: ``"train_loss"`` (default) or ``"val_loss"`` (needs ``val_data``).
    :param int min_epochs: never stop before this many epochs.
    """

    def __init__(self, rtol: float = 1e-4, patience: int = 5, monitor: str = "train_loss", min_epochs: int = 0):
        self.rtol = check_positive_float(rtol, "rtol")
        self.patience = check_positive_int(patience, "patience")
        self.monitor = check_choice(monitor, "monitor", ["train_loss", "val_loss"])
        self.min_epochs = check_nonnegative_int(min_epochs, "min_epochs")
        self.best, self.wait = None, 0

    def on_epoch_end(self, state):
        value = getattr(state.result, self.monitor)[-1]
        if value is None:
            raise ValueError("EarlyStopping(monitor='val_loss') needs fit(..., val_data=...)")
        if not math.isfinite(value):
            return
        if self.best is None or value < self.best - self.rtol * abs(self.best):
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.patience and state.epoch + 1 >= self.min_epochs:
            state.stop(
                f"early stopping: {self.monitor} improved by less than rtol={self.rtol:g} of {self.best:.6g} "
                f"for {self.patience} epochs"
            )

    def state_dict(self):
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state):
        self.best, self.wait = state.get("best"), state.get("wait", 0)


class ProjectParams(Callback):
    """After every update, apply ``fn(name, tensor)`` in place to each trained tensor whose
    name matches one of ``patterns`` (shell-style, e.g. ``"alpha_*"``); ``fn`` may modify the
    tensor in place or return the new values. Names are ``pyro.param`` names or module paths
    (:meth:`TrainState.named_parameters`); the tensor is the one the optimizer trains (for a
    constrained ``pyro.param``, its unconstrained value)."""

    def __init__(self, fn, patterns=("*",)):
        if not callable(fn):
            raise TypeError(f"`fn` must be a callable (name, tensor) -> tensor or None, but got {type(fn).__name__}")
        self.fn = fn
        self.patterns = _patterns(patterns)
        self._targets = None

    def on_step_end(self, state):
        if self._targets is None:
            self._targets = [(n, t) for n, t in state.named_parameters() if _matches(n, self.patterns)]
            if not self._targets:
                names = [n for n, _ in state.named_parameters()]
                raise ValueError(
                    f"{type(self).__name__}: no trained parameter matches {list(self.patterns)}; "
                    f"the trained parameters are {names[:10]}{' ...' if len(names) > 10 else ''}"
                )
        with torch.no_grad():
            for name, tensor in self._targets:
                out = self.fn(name, tensor)
                if out is not None and out is not tensor:
                    tensor.copy_(out)


class ClipParams(ProjectParams):
    """Clamp trained tensors after every update, as the sparse gamma DEF example clips its
    parameters: ``ClipParams({"alpha_*": (-2.5, None), "mean_*": (-4.5, None)})``.

    :param dict bounds: pattern -> ``(min, max)``, either bound ``None``; the first matching
        pattern applies.
    """

    def __init__(self, bounds: dict):
        if not isinstance(bounds, dict) or not bounds:
            raise TypeError(f"`bounds` must be a non-empty dict pattern -> (min, max), but got {bounds!r}")
        for pattern, pair in bounds.items():
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2) or pair == (None, None):
                raise ValueError(f"`bounds[{pattern!r}]` must be (min, max) with at least one bound, but got {pair!r}")
        self.bounds = {str(k): tuple(v) for k, v in bounds.items()}

        def clamp(name, tensor):
            lo, hi = next(b for p, b in self.bounds.items() if fnmatch.fnmatchcase(name, p))
            tensor.clamp_(min=lo, max=hi)

        super().__init__(clamp, tuple(self.bounds))


class KwargSchedule(Callback):
    """Pass ``name=schedule(step)`` to the model and guide at every step, ``step`` counting
    from 0 over the whole run: KL annealing as the deep Markov model example does it.

    :param str name: the keyword the model and guide take (e.g. ``"annealing_factor"``).
    :param schedule: ``step -> value``; see :func:`linear_schedule`.
    """

    def __init__(self, name: str, schedule):
        if not isinstance(name, str) or not name.isidentifier():
            raise TypeError(f"`name` must be a keyword name, but got {name!r}")
        if not callable(schedule):
            raise TypeError(f"`schedule` must be a callable step -> value, but got {type(schedule).__name__}")
        self.name, self.schedule = name, schedule

    def on_step_start(self, state):
        state.kwargs[self.name] = self.schedule(state.step)


def linear_schedule(start: float, end: float, num_steps: int):
    """``step -> value`` rising (or falling) linearly from ``start`` to ``end`` over
    ``num_steps`` steps, then ``end``."""
    n = check_positive_int(num_steps, "num_steps")
    start, end = float(start), float(end)
    return lambda step: end if step >= n else start + (end - start) * step / n


class TensorBoard(Callback):
    """Log losses to TensorBoard with torch's ``SummaryWriter``: ``loss/step`` every
    ``every`` steps, ``loss/train`` and ``loss/val`` per epoch, and each parameter group's
    learning rate. Needs the ``tensorboard`` package (``pip install tensorboard``)."""

    def __init__(self, log_dir=None, every: int = 1, writer=None):
        self.every = check_positive_int(every, "every")
        self.log_dir, self.writer = log_dir, writer

    def on_fit_start(self, state):
        if self.writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ImportError(
                    "the TensorBoard callback needs the tensorboard package: pip install tensorboard "
                    '(or pip install "ppmodels[tensorboard]")'
                ) from exc
            self.writer = SummaryWriter(log_dir=None if self.log_dir is None else str(self.log_dir))

    def on_step_end(self, state):
        if (state.step + 1) % self.every == 0:
            self.writer.add_scalar("loss/step", state.loss_value, state.step + 1)

    def on_epoch_end(self, state):
        r = state.result
        self.writer.add_scalar("loss/train", r.train_loss[-1], state.epoch + 1)
        if r.val_loss and r.val_loss[-1] is not None:
            self.writer.add_scalar("loss/val", r.val_loss[-1], state.epoch + 1)
        if state.optimizer is not None:
            for i, group in enumerate(state.optimizer.param_groups):
                self.writer.add_scalar(f"lr/group{i}", group["lr"], state.epoch + 1)
        self.writer.flush()

    def on_fit_end(self, state):
        if self.writer is not None:
            self.writer.flush()


def _patterns(patterns):
    if isinstance(patterns, str):
        patterns = (patterns,)
    patterns = tuple(patterns)
    if not patterns or not all(isinstance(p, str) for p in patterns):
        raise TypeError(f"`patterns` must be a name pattern or a sequence of them, but got {patterns!r}")
    return patterns


def _matches(name, patterns):
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


__all__ = [
    "Callback",
    "ClipParams",
    "EarlyStopping",
    "KwargSchedule",
    "ProjectParams",
    "TensorBoard",
    "TrainState",
    "linear_schedule",
]
