"""MindSpore's ``infer.variational`` subpackage path."""

from .._variational import ELBO, SVI

__all__ = ["ELBO", "SVI"]
