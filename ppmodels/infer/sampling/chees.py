"""ChEES-HMC: many chains of HMC in lockstep, their trajectory length adapted together.

Hoffman, Radul and Sountsov (2021), "An Adaptive-MCMC Scheme for Setting Trajectory Lengths
in Hamiltonian Monte Carlo". All chains take the same number of leapfrog steps each
iteration, so the potential is evaluated for every chain in one call
(:class:`~ppmodels.infer.density.many_points.BatchedPotential`): on a small model that call
costs about what one chain's does, and the chains' draws come nearly for free. NUTS cannot run that way:
each of its chains builds a tree of its own size.

Each iteration, every chain integrates for ``u * T``: ``T`` is the trajectory length, ``u`` a
jitter in (0, 1) from the base-2 van der Corput sequence, the same for all chains (a jittered
length cannot return to its start as a fixed one can on a Gaussian). Then each chain accepts
or rejects its own proposal. During warm-up:

- the step size by dual averaging (Hoffman and Gelman's constants) of the harmonic mean of
  the chains' acceptance probabilities towards ``target_accept_prob`` (0.651, the optimum for
  HMC of Beskos et al.); the harmonic mean is pulled down by any one chain that is stuck;
- ``log T`` by Adam, ascending the ChEES criterion's gradient: the change in each chain's
  squared distance from the chains' centre, times how fast its proposal was moving away from
  the centre, weighted by acceptance, in the coordinates the mass matrix whitens;
- a diagonal mass matrix from the states of all chains in Stan's windows (the windows and the
  regularisation are NUTS's, :mod:`~ppmodels.infer.sampling.adaptation`).

The step size after warm-up is dual averaging's average; ``T`` is the geometric mean of its
values over the last window. Choices of this library where the paper leaves them open: Adam's
rate 0.025 with ``beta1=0``, ``beta2=0.95``; ``T`` starting at 8 step sizes and kept within
1 to ``max_leapfrogs`` of them; the proposals' centre weighted by acceptance; the gradient
divided by the chains' squared spread, and skipped where nearly every proposal was rejected
(raw, one divergent iteration's outsized gradient fills Adam's second moment and holds its
step near zero for the rest of warm-up). Where the chains start is the driver's business
(:mod:`~ppmodels.infer.sampling.many_chains`: a short NUTS run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..._validate import check_positive_int
from .adaptation import WindowedAdaptation
from .kernel import MAX_DELTA_ENERGY, ChainResult

#: an iteration whose chains' mean acceptance probability is below this leaves ``T`` alone
MIN_MEAN_ACCEPT = 0.05


@dataclass(frozen=True)
class CheesSettings:
    """ChEES-HMC's options."""

    step_size: float = 1.0  # the first step size tried (then adapted)
    target_accept_prob: float = 0.651
    adapt_step_size: bool = True
    adapt_mass_matrix: bool = True
    trajectory_length: float | None = None  # the first T (8 step sizes when None), then adapted
    learning_rate: float = 0.025  # Adam's, on log T
    max_leapfrogs: int = 1000  # at most this many steps an iteration (NUTS's depth 10: 1,023)
    start_warmup: int = 150  # the warm-up of the NUTS run the chains start from

    def __post_init__(self):
        for name in ("step_size", "learning_rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not (isinstance(self.target_accept_prob, (int, float)) and 0 < self.target_accept_prob < 1):
            raise ValueError(f"target_accept_prob must be a number between 0 and 1, got {self.target_accept_prob!r}")
        if self.trajectory_length is not None and not (
            isinstance(self.trajectory_length, (int, float)) and self.trajectory_length > 0
        ):
            raise ValueError(f"trajectory_length must be a positive number or None, got {self.trajectory_length!r}")
        check_positive_int(self.max_leapfrogs, "max_leapfrogs")
        check_positive_int(self.start_warmup, "start_warmup")


def van_der_corput(n: int) -> float:
    """The ``n``-th (from 1) point of the base-2 van der Corput sequence, in (0, 1)."""
    out, scale = 0.0, 0.5
    while n:
        out += (n & 1) * scale
        n >>= 1
        scale /= 2
    return out


class _Adam:
    """Adam ascending one scalar."""

    def __init__(self, x, rate, beta1=0.0, beta2=0.95):
        self.x, self.rate, self.beta1, self.beta2 = x, rate, beta1, beta2
        self.m = self.v = 0.0
        self.t = 0

    def step(self, gradient):
        self.t += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * gradient
        self.v = self.beta2 * self.v + (1 - self.beta2) * gradient**2
        m = self.m / (1 - self.beta1**self.t)
        v = self.v / (1 - self.beta2**self.t)
        self.x += self.rate * m / (math.sqrt(v) + 1e-8)


class Chees:
    """ChEES-HMC on ``potential(Z) -> (U, grad)`` for ``Z`` of shape ``(chains, dim)``, from
    ``z0`` (one row per chain), drawing from ``rng`` (a numpy ``Generator``)."""

    def __init__(self, potential, z0, rng, settings: CheesSettings = CheesSettings(), inv_mass=None, step_size=None):
        self.potential, self.rng, self.s = potential, rng, settings
        self.z = np.array(z0, dtype=np.float64)
        self.u, self.g = potential(self.z)
        bad = np.flatnonzero(~np.isfinite(self.u))
        if len(bad):
            raise ValueError(
                f"the potential energy at chain {bad[0]}'s initial point is {self.u[bad[0]]} (the model's log density "
                "is not finite there)"
            )
        self.chains, self.dim = self.z.shape
        self.inv_mass = np.ones(self.dim) if inv_mass is None else np.asarray(inv_mass, dtype=np.float64).copy()
        self.step_size = settings.step_size if step_size is None else float(step_size)
        self.trajectory = settings.trajectory_length
        self.leapfrogs = 0  # per chain
        self.iteration = 0

    # -- dynamics ----------------------------------------------------------------------------------
    def _momentum(self):
        return self.rng.standard_normal(self.z.shape) / np.sqrt(self.inv_mass)

    def _kinetic(self, p):
        return 0.5 * np.einsum("cd,d,cd->c", p, self.inv_mass, p)

    def _integrate(self, p, steps):
        z, g, eps = self.z, self.g, self.step_size
        p = p - 0.5 * eps * g
        for i in range(steps):
            z = z + eps * self.inv_mass * p
            u, g = self.potential(z)
            self.leapfrogs += 1
            p = p - (eps if i < steps - 1 else 0.5 * eps) * g
        return z, p, u, g

    def _steps(self, jitter):
        return max(1, min(self.s.max_leapfrogs, math.ceil(jitter * self.trajectory / self.step_size)))

    def transition(self):
        """One iteration for every chain: ``(acceptance probabilities, proposals, their
        momenta, jitter, steps, divergent)``; the chains move to their accepted proposals."""
        self.iteration += 1
        jitter = van_der_corput(self.iteration)
        steps = self._steps(jitter)
        p = self._momentum()
        z, p_new, u, g = self._integrate(p, steps)
        with np.errstate(all="ignore"):
            delta = (u + self._kinetic(p_new)) - (self.u + self._kinetic(p))
            delta = np.where(np.isnan(delta), np.inf, delta)
            accept = np.minimum(1.0, np.exp(-delta))
        divergent = delta > MAX_DELTA_ENERGY
        take = np.log(self.rng.uniform(size=self.chains)) < -delta
        old = self.z
        self.z = np.where(take[:, None], z, self.z)
        self.u = np.where(take, u, self.u)
        self.g = np.where(take[:, None], g, self.g)
        return accept, old, z, p_new, jitter, steps, divergent

    # -- warm-up -----------------------------------------------------------------------------------
    def _harmonic_mean(self, accept):
        return 1.0 / np.mean(1.0 / np.maximum(accept, 1e-10))

    def find_step_size(self):
        """Double or halve the step size until one leapfrog step's harmonic-mean acceptance
        over the chains crosses 0.8 (as :meth:`~ppmodels.infer.sampling.nuts.Chain.find_step_size`)."""

        def accepted():
            p = self._momentum()
            z, p2, u, g = self._integrate(p, 1)
            with np.errstate(all="ignore"):
                delta = (u + self._kinetic(p2)) - (self.u + self._kinetic(p))
                accept = np.minimum(1.0, np.exp(-np.where(np.isnan(delta), np.inf, delta)))
            return self._harmonic_mean(accept) > 0.8

        direction = 1 if accepted() else -1
        new_direction = direction
        while new_direction == direction and 1e-7 < self.step_size < 1e7:
            self.step_size *= 2.0**direction
            new_direction = 1 if accepted() else -1

    def _trajectory_gradient(self, accept, old, new, p_new, jitter):
        """The ChEES criterion's gradient in ``log T``, whitened by the mass matrix and divided
        by the squared mean squared distance of the chains from their centre, so that it has
        no units: one iteration's outlier (a divergent proposal far out) cannot swamp Adam's
        running scale for hundreds of iterations. ``nan`` when almost every proposal was
        rejected (their acceptance weights say nothing)."""
        if accept.mean() < MIN_MEAN_ACCEPT:
            return math.nan
        scale = 1.0 / np.sqrt(self.inv_mass)
        weights = accept / accept.sum()
        old_w, new_w = old * scale, np.where(np.isfinite(new), new, old) * scale
        centre_old = old_w.mean(0)
        centre_new = weights @ new_w
        spread = ((old_w - centre_old) ** 2).sum(1)
        change = ((new_w - centre_new) ** 2).sum(1) - spread
        velocity = self.inv_mass * p_new * scale  # d(whitened position)/dt at the proposal
        speed = ((new_w - centre_new) * np.where(np.isfinite(velocity), velocity, 0.0)).sum(1)
        return float(weights @ (change * speed)) * jitter * self.trajectory / max(spread.mean(), 1e-300) ** 2

    def run(self, num_samples: int, warmup: int, progress=None) -> list:
        with np.errstate(over="ignore", invalid="ignore"):
            return self._run(num_samples, warmup, progress)

    def _run(self, num_samples, warmup, progress):
        s = self.s
        adaptation = WindowedAdaptation(self, warmup, s)  # step size and mass matrix, as NUTS's
        if self.trajectory is None:
            self.trajectory = 8 * self.step_size
        adam, last_window_logs = _Adam(math.log(self.trajectory), s.learning_rate), []
        for t in range(warmup):
            accept, old, new, p_new, jitter, _, _ = self.transition()
            adaptation.step_size_toward(self._harmonic_mean(accept))
            gradient = self._trajectory_gradient(accept, old, new, p_new, jitter)
            if math.isfinite(gradient):
                adam.step(gradient)
            adam.x = min(max(adam.x, math.log(self.step_size)), math.log(self.step_size * s.max_leapfrogs))
            self.trajectory = math.exp(adam.x)
            if adaptation.in_last_window:
                last_window_logs.append(adam.x)
            if adaptation.end_iteration(t, self.z):
                self.trajectory = math.exp(float(np.mean(last_window_logs)))
            if progress is not None:
                progress(1)
        warmup_leapfrogs = self.leapfrogs
        draws = np.empty((self.chains, num_samples, self.dim))
        potential = np.empty((self.chains, num_samples))
        steps = np.empty(num_samples, dtype=np.int64)
        divergent = np.zeros((self.chains, num_samples), dtype=bool)
        accepts = np.empty((self.chains, num_samples))
        for i in range(num_samples):
            accepts[:, i], _, _, _, _, steps[i], divergent[:, i] = self.transition()
            draws[:, i], potential[:, i] = self.z, self.u
            if progress is not None:
                progress(1)
        depths = np.zeros(num_samples, dtype=np.int64)  # no trees: HMC
        return [
            ChainResult(draws[c], potential[c], depths, steps.copy(), divergent[c], accepts[c],
                        self.step_size, self.inv_mass.copy(), warmup_leapfrogs, {"trajectory_length": self.trajectory})
            for c in range(self.chains)
        ]  # fmt: skip


__all__ = ["Chees", "CheesSettings", "van_der_corput"]
