"""The contract between a kernel and the driver: what a kernel is given and what it returns.

A kernel is constructed with ``(potential, z0, rng, settings)``: ``potential(z) -> (U, grad)``
(one flat point, or a row per chain for a many-chain kernel), its starting point(s), a numpy
``Generator`` and its frozen settings; ``run(num_samples, warmup, progress=None)`` returns one
:class:`ChainResult` per chain. The driver (:mod:`~ppmodels.infer.sampling.driver`) turns them
into an :class:`~ppmodels.infer.sampling.result.MCMCResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: a transition whose energy rises by more than this diverges (Pyro's ``_max_sliced_energy``)
MAX_DELTA_ENERGY = 1000.0


@dataclass
class ChainResult:
    """One chain's run. ``draws``: ``(num_samples, dim)`` in the unconstrained space;
    ``potential``: the potential energy at each draw; per draw the tree depth (0 for HMC), the
    number of leapfrog steps, whether it diverged and the acceptance statistic; the adapted
    step size and inverse mass matrix; the leapfrog steps of warm-up; a kernel's own
    ``stats`` (ChEES's trajectory length)."""

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


__all__ = ["ChainResult", "MAX_DELTA_ENERGY"]
