"""MindSpore's ``bnn_layers/layer_distribution.py`` path."""

from ._layers import NormalPosterior, NormalPrior, normal_post_fn

__all__ = ["NormalPosterior", "NormalPrior", "normal_post_fn"]
