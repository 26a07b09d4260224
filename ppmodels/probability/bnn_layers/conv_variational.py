"""MindSpore's ``bnn_layers/conv_variational.py`` path."""

from ._layers import ConvReparam

__all__ = ["ConvReparam"]
