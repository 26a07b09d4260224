"""MindSpore's ``bnn_layers/bnn_cell_wrapper.py`` path."""

from ._layers import WithBNNLossCell

__all__ = ["WithBNNLossCell"]
