"""MindSpore's ``dpn.vae`` subpackage path."""

from .._vae import VAE, ConditionalVAE

__all__ = ["ConditionalVAE", "VAE"]
