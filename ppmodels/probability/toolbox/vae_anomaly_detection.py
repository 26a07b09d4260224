"""The ``toolbox/vae_anomaly_detection.py`` path some MindSpore versions and programs use."""

from ._toolbox import VAEAnomalyDetection

__all__ = ["VAEAnomalyDetection"]
