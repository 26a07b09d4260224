"""MindSpore's ``transforms/transform_bnn.py`` path."""

from ._transform import TransformToBNN

__all__ = ["TransformToBNN"]
