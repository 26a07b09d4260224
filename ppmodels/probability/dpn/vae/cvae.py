"""MindSpore's ``dpn/vae/cvae.py`` path: :class:`~ppmodels.probability.dpn.ConditionalVAE`."""

from .._vae import ConditionalVAE

__all__ = ["ConditionalVAE"]
