"""``transforms``: MindSpore's ``TransformToBNN`` (``mindspore.nn.probability.transforms``;
also importable as ``transforms.transform_bnn``)."""

from ._transform import TransformToBNN

__all__ = ["TransformToBNN"]
