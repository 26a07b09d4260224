"""The callbacks ``fit`` makes from its own arguments: the NaN guard, the learning-rate
schedule, validation, checkpoints and the progress display (:mod:`~ppmodels.infer.training.callbacks`
has the hooks and the callbacks a user passes)."""

from __future__ import annotations

import copy
import math
import sys
import time

import torch
from tqdm.auto import tqdm

from ..._validate import check_choice, check_positive_int
from ..errors import NonFiniteLossError
from .callbacks import Callback


class NaNGuard(Callback):
    """Stop with :class:`~ppmodels.infer.NonFiniteLossError` when the loss (or, for an
    estimator that reports none, a gradient) is not finite, before the optimizer applies it:
    the pair keeps the parameters of the last good step.

    :param int every: check every this many steps (each check reads the loss back from the
        device). With more than 1, the parameters and the optimizer state are kept at every
        good check and put back when a later check finds a NaN, so the pair still ends at the
        last state known good.
    """

    def __init__(self, reports_loss=True, every: int = 1):
        self.reports_loss, self.every = reports_loss, check_positive_int(every, "every")
        self._good = None

    def on_gradients(self, state):
        if (state.step + 1) % self.every and state.step:
            return
        if self.reports_loss:
            value = state.loss_value
            if math.isfinite(value):
                self._keep(state)
                return
        else:
            value = float("nan")
            if all(bool(torch.isfinite(t.grad).all()) for _, t in state.named_parameters() if t.grad is not None):
                self._keep(state)
                return
        kept = ""
        if self._good is not None:
            step, params, opt = self._good
            with torch.no_grad():
                for (_, t), saved in zip(state.named_parameters(), params):
                    t.copy_(saved)
            state.optimizer.load_state_dict(opt)
            kept = f" (checked every {self.every} steps: they are those before step {step + 1}, the last checked good)"
        raise NonFiniteLossError(
            f"the loss became {value} at epoch {state.epoch + 1}, step {state.step_in_epoch + 1}; training stopped "
            f"and the pair keeps the parameters of the last good step{kept}. Lower the learning rate, check the data, "
            "or bound the decoder's output.",
            state.epoch + 1,
            state.step_in_epoch + 1,
        )

    def _keep(self, state):
        if self.every > 1:
            params = [t.detach().clone() for _, t in state.named_parameters()]
            self._good = (state.step, params, copy.deepcopy(state.optimizer.state_dict()))


class LRScheduler(Callback):
    """A torch learning-rate scheduler made by ``factory(optimizer)``, stepped once per epoch
    (``interval="epoch"``) or once per step."""

    def __init__(self, factory, interval: str = "epoch"):
        if not callable(factory):
            raise TypeError(f"`scheduler` must be a factory optimizer -> LRScheduler, but got {type(factory).__name__}")
        self.factory = factory
        self.interval = check_choice(interval, "interval", ["epoch", "step"])
        self.scheduler, self._pending = None, None

    def on_gradients(self, state):
        if self.scheduler is None:  # the optimizer exists from the first step's gradients on
            self.scheduler = self.factory(state.optimizer)
            if self._pending is not None:
                self.scheduler.load_state_dict(self._pending)

    def on_step_end(self, state):
        if self.interval == "step":
            self.scheduler.step()

    def on_epoch_end(self, state):
        if self.interval == "epoch" and self.scheduler is not None:
            self.scheduler.step()

    def state_dict(self):
        return {"scheduler": self.scheduler.state_dict() if self.scheduler is not None else self._pending}

    def load_state_dict(self, state):
        self._pending = state.get("scheduler")


class Validation(Callback):
    """The validation loss after each epoch (``None`` entries without validation data)."""

    def __init__(self, evaluate=None):
        self.evaluate = evaluate

    def on_epoch_end(self, state):
        state.result.val_loss.append(self.evaluate() if self.evaluate is not None else None)


class Checkpoint(Callback):
    """Write a checkpoint (atomically) after every ``every`` epochs and after the last."""

    def __init__(self, path, save, every: int = 1):
        self.path, self.save, self.every = path, save, check_positive_int(every, "every")

    def on_epoch_end(self, state):
        last = state.epoch + 1 == state.epochs or state.stopping
        if (state.epoch + 1) % self.every == 0 or last:
            self.save(self.path)


class Progress(Callback):
    """A progress bar over the whole run (epoch and loss beside it), or plain lines.

    :param mode: ``"bar"`` (tqdm), ``"log"`` (one line per epoch on stderr, and one every
        ``log_seconds`` within a long epoch: for log files and pipes), or ``"auto"`` (the
        bar on a terminal, nothing otherwise).
    """

    def __init__(self, mode="auto", total_steps=None, log_seconds: float = 30.0, stream=None):
        self.mode = check_choice(mode, "progress", ["auto", "bar", "log", "off"])
        self.total_steps, self.log_seconds, self.stream = total_steps, log_seconds, stream
        self.bar = None
        self._last = 0.0

    def _out(self):
        return self.stream if self.stream is not None else sys.stderr

    def on_fit_start(self, state):
        if self.mode in ("bar", "auto"):
            self.bar = tqdm(
                total=self.total_steps,
                disable=None if self.mode == "auto" else False,
                unit="step",
                leave=False,
                file=self._out(),
            )
        self._start = self._last = time.perf_counter()

    def on_step_end(self, state):
        if self.bar is not None:
            self.bar.update(1)
        elif self.mode == "log" and time.perf_counter() - self._last > self.log_seconds:
            self._last = time.perf_counter()
            print(
                f"epoch {state.epoch + 1}/{state.epochs} step {state.step_in_epoch + 1} loss {state.loss_value:.6g}",
                file=self._out(),
                flush=True,
            )

    def on_epoch_end(self, state):
        r = state.result
        loss = f"{r.train_loss[-1]:.6g}"
        if self.bar is not None:
            self.bar.set_postfix(epoch=f"{state.epoch + 1}/{state.epochs}", loss=loss)
        elif self.mode == "log":
            self._last = time.perf_counter()
            val = f" val {r.val_loss[-1]:.6g}" if r.val_loss and r.val_loss[-1] is not None else ""
            print(
                f"epoch {state.epoch + 1}/{state.epochs} loss {loss}{val} ({r.epoch_seconds[-1]:.1f} s)",
                file=self._out(),
                flush=True,
            )

    def on_fit_end(self, state):
        if self.bar is not None:
            self.bar.close()


__all__ = ["Checkpoint", "LRScheduler", "NaNGuard", "Progress", "Validation"]
