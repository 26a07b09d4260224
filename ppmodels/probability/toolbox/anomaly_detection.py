"""MindSpore's ``toolbox/anomaly_detection.py`` path (where its ``VAEAnomalyDetection`` lives)."""

from ._toolbox import VAEAnomalyDetection

__all__ = ["VAEAnomalyDetection"]
