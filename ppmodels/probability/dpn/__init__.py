"""``dpn``: MindSpore's deep probabilistic networks, ``VAE`` and ``ConditionalVAE``
(``mindspore.nn.probability.dpn``; also importable as ``dpn.vae.vae`` and ``dpn.vae.cvae``)."""

from ._vae import VAE, ConditionalVAE

__all__ = ["ConditionalVAE", "VAE"]
