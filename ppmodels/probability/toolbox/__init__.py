"""``toolbox``: MindSpore's ``UncertaintyEvaluation`` and ``VAEAnomalyDetection``
(``mindspore.nn.probability.toolbox``; also importable by MindSpore's file paths:
``uncertainty_evaluation``, ``anomaly_detection`` and ``vae_anomaly_detection``)."""

from ._toolbox import UncertaintyEvaluation, VAEAnomalyDetection

__all__ = ["UncertaintyEvaluation", "VAEAnomalyDetection"]
