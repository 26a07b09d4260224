"""MindSpore's ``dpn/vae/vae.py`` path: :class:`~ppmodels.probability.dpn.VAE`."""

from .._vae import VAE

__all__ = ["VAE"]
