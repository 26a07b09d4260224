"""Warm-up adaptation apart from the kernels: Stan's (and Pyro's) windows, dual averaging of the
step size, a diagonal mass matrix from Welford's running variance.

A sampler that adapts has ``step_size``, ``inv_mass`` and ``find_step_size()``;
:class:`WindowedAdaptation` drives them through warm-up. NUTS's and HMC's
:class:`~ppmodels.infer.sampling.nuts.Chain` and ChEES's
:class:`~ppmodels.infer.sampling.chees.Chees` (a row per chain) share it.
"""

from __future__ import annotations

import math

import numpy as np


def adaptation_windows(warmup: int) -> list:
    """Stan's (and Pyro's) warm-up windows ``[(start, end), ...]``: a step-size-only buffer,
    mass-matrix windows doubling from 25, and a final step-size-only buffer."""
    if warmup < 20:
        return [(0, warmup - 1)]
    start, end, first = 75, 50, 25
    if start + end + first > warmup:
        start, end = int(0.15 * warmup), int(0.1 * warmup)
        first = warmup - start - end
    windows = [(0, start - 1)]
    end_start = warmup - end
    size, begin = first, start
    while begin < end_start:
        current = size
        if 3 * current <= end_start - begin:
            size = 2 * current
        else:
            current = end_start - begin
        windows.append((begin, begin + current - 1))
        begin += current
    windows.append((end_start, warmup - 1))
    return windows


class DualAveraging:
    """Nesterov's dual averaging of log step sizes (Hoffman and Gelman's constants)."""

    def __init__(self, step_size, t0=10.0, kappa=0.75, gamma=0.05):
        self.center = math.log(10 * step_size)
        self.t0, self.kappa, self.gamma = t0, kappa, gamma
        self.t, self.g_avg, self.x_avg, self.x = 0, 0.0, 0.0, math.log(step_size)

    def step(self, g):
        self.t += 1
        self.g_avg = (1 - 1 / (self.t + self.t0)) * self.g_avg + g / (self.t + self.t0)
        self.x = self.center - math.sqrt(self.t) / self.gamma * self.g_avg
        w = self.t ** (-self.kappa)
        self.x_avg = (1 - w) * self.x_avg + w * self.x


class Welford:
    def __init__(self, dim):
        self.n, self.mean, self.m2 = 0, np.zeros(dim), np.zeros(dim)

    def update(self, x):
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    def variance(self):
        """Stan's regularised variance: shrunk towards 1e-3 with weight 5 / (n + 5)."""
        var = self.m2 / max(self.n - 1, 1)
        return (self.n / (self.n + 5.0)) * var + 1e-3 * (5.0 / (self.n + 5.0))


class WindowedAdaptation:
    """Stan's (and Pyro's) warm-up for a ``sampler`` with ``step_size``, ``inv_mass`` and
    ``find_step_size()``: the step size by dual averaging at every iteration; a diagonal mass
    matrix from the states of the middle windows (:func:`adaptation_windows`), set at each
    one's end, followed by a new step-size search; dual averaging's average at the end.
    :class:`~ppmodels.infer.sampling.nuts.Chain` (one state) and
    :class:`~ppmodels.infer.sampling.chees.Chees` (a row per chain) share it."""

    def __init__(self, sampler, warmup: int, settings):
        self.sampler, self.s = sampler, settings
        self.windows = adaptation_windows(warmup) if warmup else []
        if settings.adapt_step_size and warmup:
            sampler.find_step_size()
        self.averaging = DualAveraging(sampler.step_size)
        self.welford, self.window = Welford(sampler.inv_mass.size), 0

    @property
    def in_last_window(self) -> bool:
        return self.window == len(self.windows) - 1

    def step_size_toward(self, accept_prob: float) -> None:
        """One dual-averaging step on this iteration's acceptance statistic."""
        if self.s.adapt_step_size:
            self.averaging.step(self.s.target_accept_prob - accept_prob)
            self.sampler.step_size = math.exp(self.averaging.x)

    def end_iteration(self, t: int, states) -> bool:
        """After warm-up iteration ``t`` with ``states`` (rows): the mass-matrix windows'
        bookkeeping; True at the end of the last window (the warm-up's end)."""
        s, sampler = self.s, self.sampler
        mass_phase = s.adapt_mass_matrix and 0 < self.window < len(self.windows) - 1
        if mass_phase:
            for row in states:
                self.welford.update(row)
        finished = False
        if t == self.windows[self.window][1]:
            if self.in_last_window:
                if s.adapt_step_size:
                    sampler.step_size = math.exp(self.averaging.x_avg)
                finished = True
            elif mass_phase:
                sampler.inv_mass = self.welford.variance()
                self.welford = Welford(sampler.inv_mass.size)
                if s.adapt_step_size:
                    sampler.find_step_size()
                    self.averaging = DualAveraging(sampler.step_size)
            self.window += 1
        return finished


__all__ = ["DualAveraging", "Welford", "WindowedAdaptation", "adaptation_windows"]
