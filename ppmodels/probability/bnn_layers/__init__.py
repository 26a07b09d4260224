"""``bnn_layers``: MindSpore's Bayesian layers and their loss cell
(``mindspore.nn.probability.bnn_layers``; also importable by MindSpore's file paths:
``dense_variational``, ``conv_variational``, ``bnn_cell_wrapper``, ``layer_distribution``)."""

from ._layers import (
    ConvReparam,
    DenseLocalReparam,
    DenseReparam,
    NormalPosterior,
    NormalPrior,
    WithBNNLossCell,
    normal_post_fn,
)

__all__ = [
    "ConvReparam",
    "DenseLocalReparam",
    "DenseReparam",
    "NormalPosterior",
    "NormalPrior",
    "WithBNNLossCell",
    "normal_post_fn",
]
