"""Plain PyTorch networks: MLP and convolutional encoders/decoders, LeNet-5."""

from ._common import GaussianHead
from .conv import ConvDecoder, ConvEncoder
from .lenet import LeNet5
from .mlp import MLPClassifier, MLPDecoder, MLPEncoder

__all__ = ["ConvDecoder", "ConvEncoder", "GaussianHead", "LeNet5", "MLPClassifier", "MLPDecoder", "MLPEncoder"]
