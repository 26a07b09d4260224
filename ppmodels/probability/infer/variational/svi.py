"""MindSpore's ``infer/variational/svi.py`` path: :class:`~ppmodels.probability.infer.SVI`."""

from .._variational import SVI

__all__ = ["SVI"]
