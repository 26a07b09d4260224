"""A Pyro model's log density compiled: the floor that MCMC and the VI families stand on.

- :mod:`~ppmodels.infer.density.potential`: the negative log joint and its gradient in the
  unconstrained space, traced once and compiled (:class:`Potential`);
- :mod:`~ppmodels.infer.density.many_points`: the same for many chains' points in one call;
- :mod:`~ppmodels.infer.density.markov_scan`: an enumerated Markov chain summed out by a
  parallel scan;
- :mod:`~ppmodels.infer.density.support`: an improper or random density refused by name;
- :mod:`~ppmodels.infer.density.preparation`: the sequence that builds, checks and compiles
  a potential for a sampler, and :func:`check_proper` alone.
"""

from .many_points import BatchedPotential
from .potential import Potential
from .preparation import check_proper

__all__ = ["BatchedPotential", "Potential", "check_proper"]
