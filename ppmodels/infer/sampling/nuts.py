"""NUTS and HMC on a flat potential, one chain: Pyro's algorithm without Pyro's per-step work.

Pyro's :class:`~pyro.infer.NUTS` spends most of a small model's time outside the model: dicts
of sites, the autograd engine, ``pyro.sample`` for every coin flip of the tree. This kernel
keeps Pyro's algorithm and its defaults — multinomial NUTS with Betancourt's U-turn criterion
on the momentum sum, biased progressive sampling between doublings, divergence when the
energy rises by more than 1,000, ``max_tree_depth=10``; warm-up by dual averaging of the step
size towards ``target_accept_prob=0.8`` and a diagonal mass matrix from Stan's windows
(:mod:`~ppmodels.infer.sampling.adaptation`), with a reasonable step size found after each
window — and runs it on a flat float64 numpy state, calling the potential once per leapfrog
step (:class:`~ppmodels.infer.density.potential.Potential`, compiled). It is checked against
Pyro's NUTS and against closed-form posteriors in ``tests/test_mcmc.py``. One default differs:
HMC's integration time is jittered (:attr:`KernelSettings.jitter`), where Pyro's is fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .adaptation import WindowedAdaptation
from .kernel import MAX_DELTA_ENERGY, ChainResult

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
    #: the full one (1: from 0 to it; 0: always the full one, as Pyro's HMC). Pyro's default, 2 pi
    #: at a fixed length, is a whole period of a Gaussian posterior once the mass matrix has
    #: adapted to it: the trajectory comes back near where it started (``benchmarks/hmc_jitter.py``)
    jitter: float = 1.0

    def __post_init__(self):
        if not (isinstance(self.jitter, (int, float)) and 0.0 <= self.jitter <= 1.0):
            raise ValueError(f"jitter must be a number from 0 to 1 (the share of HMC's integration time drawn at "
                             f"random each iteration), got {self.jitter!r}")  # fmt: skip


def _logaddexp(a: float, b: float) -> float:
    high = max(a, b)
    return high if high == -math.inf else high + math.log1p(math.exp(-abs(a - b)))


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


__all__ = ["Chain", "KernelSettings"]
