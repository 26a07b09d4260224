"""When is a stochastic optimisation done? The rule compare and :class:`StopOnConvergence`
share, from the gradients alone.

At an optimum the expected gradient is zero. Over a window of steps each trained entry's
mean gradient is compared with its standard error (the entries' gradients vary from step to
step through the ELBO's Monte Carlo noise); the window is *stationary* when the largest of
the P ratios is below ``3 + sqrt(2 ln P)`` (the largest of P standard normal ratios stays
below ``sqrt(2 ln P)``; the 3 leaves room for the steps' correlation). The rule is the same
whatever the loss's scale, and needs no learning rate.

:class:`StopOnConvergence` builds a schedule on it, in the spirit of RAABBVI (Welandawe et
al. 2022: keep the step size while the iterates move, decrease it once they are
stationary, average the iterates, stop on a rule): train at the optimiser's learning rate
until a window is stationary, move the parameters to their average over that window and
multiply the rate by 0.3; after four such decreases, when a window is stationary at the
smallest rate, end at its average.
The steps used are in ``FitResult.num_steps`` and the reason in ``FitResult.stopped``.
"""

from __future__ import annotations

import math

import torch

from ..._validate import check_nonnegative_int, check_positive_float, check_positive_int
from .callbacks import Callback


def stationarity_limit(num_entries: int) -> float:
    """The largest mean-gradient ratio a stationary window of ``num_entries`` entries shows."""
    return 3 + math.sqrt(2 * math.log(max(num_entries, 2)))


class GradientWindow:
    """Running sums of the trained entries' gradients over a window: memory of two copies of
    the parameters, whatever the window's length."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.count, self.total, self.squares = 0, None, None

    def add(self, named_parameters) -> None:
        grads = [t.grad.detach().reshape(-1) for _, t in named_parameters if t.grad is not None]
        if not grads:
            return
        g = torch.cat(grads).double()
        if self.total is not None and g.numel() != self.total.numel():  # the trained set changed: start again
            self.reset()
        if self.total is None:
            self.total, self.squares = torch.zeros_like(g), torch.zeros_like(g)
        self.total += g
        self.squares += g * g
        self.count += 1

    def worst_ratio(self) -> float:
        """The largest |mean gradient| / standard error over the entries (NaN under 10 steps)."""
        n = self.count
        if n < 10 or self.total is None:
            return float("nan")
        mean = self.total / n
        var = ((self.squares - n * mean * mean) / (n - 1)).clamp_min(0)
        ratio = mean.abs() / ((var / n).sqrt() + 1e-12)
        return float(ratio.max())

    def stationary(self) -> bool:
        return self.worst_ratio() < stationarity_limit(self.total.numel())

    def not_converged_message(self, name: str) -> str | None:
        """A warning when the window is not stationary; ``None`` when it is (or is too short)."""
        worst = self.worst_ratio()
        if math.isnan(worst):
            return None
        limit = stationarity_limit(self.total.numel())
        if worst < limit:
            return None
        return (
            f"{name}: not converged: over its last {self.count} steps a parameter's mean gradient is {worst:.1f} "
            f"standard errors from zero (the rule flags more than {limit:.1f} for {self.total.numel()} parameters); "
            "train longer (vi_epochs=)"
        )


class StopOnConvergence(Callback):
    """Train until the gradients are stationary at the smallest learning rate, then stop.

    Every ``window`` steps the window's gradients are tested (:class:`GradientWindow`):
    while they are not stationary training goes on at the same rate; when they are, the
    trained tensors are set to their average over the window (the iterates of a stationary
    window scatter around the optimum; their average is closer) and each param group's
    learning rate is multiplied by ``factor``, up to ``decreases`` times; a stationary
    window after the last decrease stops training, at its average, with the reason in
    ``FitResult.stopped``. ``fit``'s ``epochs`` stay the maximum. Use it without
    ``scheduler=`` (it sets the rate itself); with one step per epoch (full-batch data) a
    window is ``window`` epochs.

    :param int window: steps per test (default 200).
    :param float factor: the learning rate's multiplier at each decrease (default 0.3).
    :param int decreases: decreases before the final test (default 4: the rate ends 123 times
        smaller, about as compare's fixed schedule's 100). On a Gaussian posterior from its
        Laplace start (``tests/test_flat_priors.py``'s) these defaults stopped after 1,000 steps
        with the full-rank guide's means within 0.025 sd and sds within 2% over four seeds;
        the fixed 3,000-step schedule gave 0.016 sd and 1.7%.

    :ivar converged: whether training stopped on the rule.
    :ivar tested: the last window tested (a :class:`GradientWindow`; its
        ``not_converged_message`` says why when training ran out of steps first).
    """

    def __init__(self, window: int = 200, factor: float = 0.3, decreases: int = 4):
        self.window = check_positive_int(window, "window")
        if self.window < 10:
            raise ValueError(f"`window` must be at least 10 steps (a standard error needs them), but got {window}")
        self.factor = check_positive_float(factor, "factor")
        if not self.factor < 1:
            raise ValueError(f"`factor` must be below 1 (it decreases the learning rate), but got {factor}")
        self.decreases = check_nonnegative_int(decreases, "decreases")
        self.done = 0
        self.converged = False
        self.window_grads, self.tested = GradientWindow(), None
        self._sums = None

    def on_gradients(self, state):
        self.window_grads.add(state.named_parameters())

    def on_step_end(self, state):
        params = [t for _, t in state.named_parameters()]
        with torch.no_grad():
            if self._sums is None or len(self._sums) != len(params):
                self._sums = [torch.zeros_like(t) for t in params]
            for total, t in zip(self._sums, params):
                total += t
        if self.window_grads.count < self.window:
            return
        self.tested, self.window_grads = self.window_grads, GradientWindow()
        sums, self._sums = self._sums, None
        if self.tested.stationary():
            with torch.no_grad():
                for total, t in zip(sums, params):
                    t.copy_(total / self.tested.count)
            if self.done == self.decreases:
                self.converged = True
                state.stop(
                    f"converged: stationary gradients over {self.window} steps at the smallest learning rate "
                    f"(after {self.done} decreases by {self.factor:g}), at step {state.step + 1}"
                )
                return
            for group in state.optimizer.param_groups:
                group["lr"] *= self.factor
            self.done += 1

    def state_dict(self):
        return {"done": self.done}

    def load_state_dict(self, state):
        self.done = int(state.get("done", 0))


__all__ = ["GradientWindow", "StopOnConvergence", "stationarity_limit"]
