"""One chain of NUTS (or HMC) on a flat potential: Pyro's algorithm, without Pyro's per-step work.

Pyro's :class:`~pyro.infer.NUTS` spends most of a small model's time outside the model: dicts
of sites, the autograd engine, ``pyro.sample`` for every coin flip of the tree. This kernel
keeps Pyro's algorithm and its defaults — multinomial NUTS with Betancourt's U-turn criterion
on the momentum sum, biased progressive sampling between doublings, divergence when the
energy rises by more than 1,000, ``max_tree_depth=10``; warm-up by dual averaging of the step
size towards ``target_accept_prob=0.8`` and a diagonal mass matrix from Stan's windows
(75 / 25-doubling / 50 steps, regularised as Stan does), with a reasonable step size found
after each window — and runs it on a flat float64 numpy state, calling the potential once per
leapfrog step (:class:`~ppmodels.infer.potential.Potential`, compiled). It is checked against
Pyro's NUTS and against closed-form posteriors in ``tests/test_mcmc.py``. One default differs:
HMC's integration time is jittered (:attr:`KernelSettings.jitter`), where Pyro's is fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

MAX_DELTA_ENERGY = 1000.0  # Pyro's _max_sliced_energy
_LOG_08 = math.log(0.8)


@dataclass(frozen=True)
class KernelSettings:
    """The kernel's options (Pyro's names and defaults)."""

    step_size: float = 1.0
    adapt_step_size: bool = True
    adapt_mass_matrix: bool = True
    target_accept_prob: float = 0.8
    max_tree_depth: int = 10
    num_steps: int | None = None  # HMC: a fixed number of leapfrog steps (NUTS when None)
    trajectory_length: float | None = None  # HMC: num_steps from step_size (2 pi by default)
    #: HMC: each iteration's integration time is drawn uniformly from the last ``jitter`` of
    #: the full one (1: from 0 to it; 0: always the full one, as Pyro's HMC). Pyro's default, 2 pi at a fixed
    #: length, is a whole period of a Gaussian posterior once the mass matrix has adapted to it:
    #: the trajectory comes back near where it started (conjugate regression, 600 draws: min
    #: ESS 1-45 fixed, Pyro's own 4-188, against 363-612 jittered in 36-46% of the leapfrog
    #: steps; ``benchmarks/hmc_jitter.py``)
    jitter: float = 1.0

    def __post_init__(self):
        if not (isinstance(self.jitter, (int, float)) and 0.0 <= self.jitter <= 1.0):
            raise ValueError(f"jitter must be a number from 0 to 1 (the share of HMC's integration time drawn at "
                             f"random each iteration), got {self.jitter!r}")  # fmt: skip


@dataclass
class ChainResult:
    """``draws``: ``(num_samples, dim)`` in the unconstrained space; per draw the tree depth,
    the number of leapfrog steps and whether it diverged; the adapted step size and inverse
    mass matrix."""

    draws: np.ndarray
    potential: np.ndarray
    depths: np.ndarray
    leapfrogs: np.ndarray
    divergent: np.ndarray
    accept_prob: np.ndarray
    step_size: float
    inverse_mass: np.ndarray
    warmup_leapfrogs: int = 0
    stats: dict = field(default_factory=dict)


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


def _logaddexp(a: float, b: float) -> float:
    high = max(a, b)
    return high if high == -math.inf else high + math.log1p(math.exp(-abs(a - b)))


class _DualAveraging:
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


class _Welford:
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
    :class:`Chain` (one state) and :class:`~ppmodels.infer.chees.Chees` (a row per chain)
    share it."""

    def __init__(self, sampler, warmup: int, settings):
        self.sampler, self.s = sampler, settings
        self.windows = adaptation_windows(warmup) if warmup else []
        if settings.adapt_step_size and warmup:
            sampler.find_step_size()
        self.averaging = _DualAveraging(sampler.step_size)
        self.welford, self.window = _Welford(sampler.inv_mass.size), 0

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
                self.welford = _Welford(sampler.inv_mass.size)
                if s.adapt_step_size:
                    sampler.find_step_size()
                    self.averaging = _DualAveraging(sampler.step_size)
            self.window += 1
        return finished


class _Tree:
    __slots__ = ("z_l", "p_l", "g_l", "z_r", "p_r", "g_r", "z", "u", "g", "p_sum", "log_w", "turning",
                 "diverging", "accept", "n")  # fmt: skip


class Chain:
    """NUTS (``num_steps=None``) or HMC on ``potential(z) -> (U, grad)`` from ``z0``, drawing from
    ``rng`` (a numpy ``Generator``)."""

    def __init__(self, potential, z0, rng, settings: KernelSettings = KernelSettings()):
        self.potential, self.rng, self.s = potential, rng, settings
        self.z = np.asarray(z0, dtype=np.float64).copy()
        self.u, self.g = potential(self.z)
        if not math.isfinite(self.u):
            raise ValueError(
                f"the potential energy at the initial point is {self.u} (the model's log density is not finite there)"
            )
        self.inv_mass = np.ones_like(self.z)
        self.step_size = settings.step_size
        self.leapfrogs = 0

    # -- dynamics --------------------------------------------------------------------------------
    def _momentum(self):
        return self.rng.standard_normal(self.z.shape) / np.sqrt(self.inv_mass)

    def _kinetic(self, p):
        return 0.5 * float(p @ (self.inv_mass * p))

    def _leapfrog(self, z, p, g, eps):
        self.leapfrogs += 1
        p = p - 0.5 * eps * g
        z = z + eps * (self.inv_mass * p)
        u, g = self.potential(z)
        p = p - 0.5 * eps * g
        return z, p, g, u

    def _energy(self, u, p):
        energy = u + self._kinetic(p)
        return energy if math.isfinite(energy) else math.inf

    def _turning(self, p_l, p_r, p_sum):
        rho = p_sum - 0.5 * (p_l + p_r)
        return float((self.inv_mass * p_l) @ rho) <= 0 or float((self.inv_mass * p_r) @ rho) <= 0

    # -- NUTS --------------------------------------------------------------------------------------
    def _leaf(self, z, p, g, direction, energy0):
        z, p, g, u = self._leapfrog(z, p, g, direction * self.step_size)
        delta = self._energy(u, p) - energy0
        t = _Tree()
        t.z_l = t.z_r = t.z = z
        t.p_l = t.p_r = t.p_sum = p
        t.g_l = t.g_r = t.g = g
        t.u, t.log_w, t.turning = u, -float(delta), False
        t.diverging = delta > MAX_DELTA_ENERGY
        t.accept = min(1.0, math.exp(-delta)) if delta > -700 else 1.0
        t.n = 1
        return t

    def _subtree(self, z, p, g, direction, depth, energy0):
        if depth == 0:
            return self._leaf(z, p, g, direction, energy0)
        first = self._subtree(z, p, g, direction, depth - 1, energy0)
        if first.turning or first.diverging:
            return first
        if direction == 1:
            second = self._subtree(first.z_r, first.p_r, first.g_r, direction, depth - 1, energy0)
        else:
            second = self._subtree(first.z_l, first.p_l, first.g_l, direction, depth - 1, energy0)
        log_w = _logaddexp(first.log_w, second.log_w)
        if second.log_w > -math.inf and self.rng.random() < math.exp(second.log_w - log_w):  # uniform progressive
            first.z, first.u, first.g = second.z, second.u, second.g
        if direction == 1:
            first.z_r, first.p_r, first.g_r = second.z_r, second.p_r, second.g_r
        else:
            first.z_l, first.p_l, first.g_l = second.z_l, second.p_l, second.g_l
        first.p_sum = first.p_sum + second.p_sum
        first.log_w = log_w
        first.accept += second.accept
        first.n += second.n
        first.turning = second.turning or self._turning(first.p_l, first.p_r, first.p_sum)
        first.diverging = second.diverging
        return first

    def _nuts(self):
        p = self._momentum()
        energy0 = self.u + self._kinetic(p)
        z_l = z_r = self.z
        p_l = p_r = p_sum = p
        g_l = g_r = self.g
        log_w, accept, n, depth, diverging = 0.0, 0.0, 0, 0, False
        while depth < self.s.max_tree_depth:
            direction = 1 if self.rng.random() < 0.5 else -1
            if direction == 1:
                tree = self._subtree(z_r, p_r, g_r, 1, depth, energy0)
                z_r, p_r, g_r = tree.z_r, tree.p_r, tree.g_r
            else:
                tree = self._subtree(z_l, p_l, g_l, -1, depth, energy0)
                z_l, p_l, g_l = tree.z_l, tree.p_l, tree.g_l
            accept += tree.accept
            n += tree.n
            if tree.diverging:
                diverging = True
                break
            if tree.turning:
                break
            depth += 1
            if tree.log_w > -math.inf and self.rng.random() < math.exp(
                min(0.0, tree.log_w - log_w)
            ):  # biased progressive
                self.z, self.u, self.g = tree.z, tree.u, tree.g
            p_sum = p_sum + tree.p_sum
            if self._turning(p_l, p_r, p_sum):
                break
            log_w = _logaddexp(log_w, tree.log_w)
        return accept / max(n, 1), depth, diverging

    def _hmc(self):
        p = self._momentum()
        energy0 = self.u + self._kinetic(p)
        steps = self._steps()
        z, g, u = self.z, self.g, self.u
        for _ in range(steps):
            z, p, g, u = self._leapfrog(z, p, g, self.step_size)
        delta = self._energy(u, p) - energy0
        accept = min(1.0, math.exp(-delta)) if delta > -700 else 1.0
        if self.rng.random() < accept:
            self.z, self.u, self.g = z, u, g
        return accept, steps, delta > MAX_DELTA_ENERGY

    def _steps(self) -> int:
        """HMC's leapfrog steps this iteration: ``num_steps``, or the trajectory length over the
        step size, shortened by a uniform share of at most ``jitter`` (no draw when it is 0)."""
        s = self.s
        fraction = 1.0 - s.jitter * self.rng.random() if s.jitter else 1.0
        if s.num_steps is not None:
            return max(1, math.ceil(s.num_steps * fraction))
        length = s.trajectory_length if s.trajectory_length is not None else 2 * math.pi
        return max(1, int(length * fraction / self.step_size))

    def transition(self):
        return self._nuts() if self.s.num_steps is None and self.s.trajectory_length is None else self._hmc()

    # -- warm-up ---------------------------------------------------------------------------------
    def find_step_size(self):
        """Double or halve the step size until one leapfrog step's acceptance crosses 0.8
        (Pyro's ``_find_reasonable_step_size``)."""

        def log_accept():
            p = self._momentum()
            z, p2, g, u = self._leapfrog(self.z, p, self.g, self.step_size)
            return -(self._energy(u, p2) - (self.u + self._kinetic(p)))

        direction = 1 if _LOG_08 < log_accept() else -1
        new_direction = direction
        while new_direction == direction and 1e-7 < self.step_size < 1e7:
            self.step_size *= 2.0**direction
            new_direction = 1 if _LOG_08 < log_accept() else -1

    def run(self, num_samples: int, warmup: int, progress=None) -> ChainResult:
        # a divergent trajectory overflows (inf - inf, ...): the energy check handles it, so
        # numpy's warnings about it are not the user's business
        with np.errstate(all="ignore"):
            return self._run(num_samples, warmup, progress)

    def _run(self, num_samples, warmup, progress):
        adaptation = WindowedAdaptation(self, warmup, self.s)
        for t in range(warmup):
            accept, _, _ = self.transition()
            adaptation.step_size_toward(accept)
            adaptation.end_iteration(t, self.z[None])
            if progress is not None:
                progress(1)
        warmup_leapfrogs = self.leapfrogs
        dim = self.z.size
        draws, potential = np.empty((num_samples, dim)), np.empty(num_samples)
        depths, leapfrogs = np.empty(num_samples, dtype=np.int64), np.empty(num_samples, dtype=np.int64)
        divergent, accepts = np.zeros(num_samples, dtype=bool), np.empty(num_samples)
        for i in range(num_samples):
            before = self.leapfrogs
            accepts[i], depths[i], divergent[i] = self.transition()
            leapfrogs[i] = self.leapfrogs - before
            draws[i], potential[i] = self.z, self.u
            if progress is not None:
                progress(1)
        return ChainResult(draws, potential, depths, leapfrogs, divergent, accepts, self.step_size,
                           self.inv_mass.copy(), warmup_leapfrogs)  # fmt: skip


__all__ = ["Chain", "ChainResult", "KernelSettings", "WindowedAdaptation", "adaptation_windows"]
