"""Variational families beyond a user's own guide, and what follows training:

- :mod:`~ppmodels.infer.vi.laplace`: Gaussian guides started at the Laplace approximation and
  trained in the coordinates it whitens (compare's mean-field and full-rank guides);
- :mod:`~ppmodels.infer.vi.discrete`: the posterior of a model's discrete sites after training.
"""

from .discrete import infer_discrete
from .laplace import laplace_guide

__all__ = ["infer_discrete", "laplace_guide"]
