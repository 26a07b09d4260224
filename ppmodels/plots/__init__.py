"""Matplotlib figures for training results and generative models (Agg backend, no display needed)."""

from .figures import (
    class_rows,
    estimator_comparison,
    function_predictions,
    image_grid,
    latent_scatter,
    latent_walk,
    loss_curves,
    marginals,
    predictive_bands,
    reliability_diagram,
    roc_curve,
    save,
    training_curves,
    uncertainty_bands,
    uncertainty_histogram,
)

__all__ = [
    "class_rows",
    "estimator_comparison",
    "function_predictions",
    "image_grid",
    "latent_scatter",
    "latent_walk",
    "loss_curves",
    "marginals",
    "predictive_bands",
    "reliability_diagram",
    "roc_curve",
    "save",
    "training_curves",
    "uncertainty_bands",
    "uncertainty_histogram",
]
