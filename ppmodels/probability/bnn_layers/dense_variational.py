"""MindSpore's ``bnn_layers/dense_variational.py`` path."""

from ._layers import DenseLocalReparam, DenseReparam

__all__ = ["DenseLocalReparam", "DenseReparam"]
