"""MindSpore's ``infer/variational/elbo.py`` path: :class:`~ppmodels.probability.infer.ELBO`."""

from .._variational import ELBO

__all__ = ["ELBO"]
