"""Plain PyTorch networks: MLP and convolutional encoders/decoders."""

from ._common import GaussianHead
from .conv import ConvDecoder, ConvEncoder
from .mlp import MLPDecoder, MLPEncoder

__all__ = ["ConvDecoder", "ConvEncoder", "GaussianHead", "MLPDecoder", "MLPEncoder"]
