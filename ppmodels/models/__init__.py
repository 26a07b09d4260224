"""Model/guide pairs."""

from ._plate import DataSizeMixin
from .vae import CVAE, LIKELIHOODS, VAE

__all__ = ["CVAE", "DataSizeMixin", "LIKELIHOODS", "VAE"]
