"""Datasets as tensors: the embedded digits default, MNIST and Fashion-MNIST from IDX files,
and small synthetic regression/classification problems."""

from .idx import ChecksumError, download, fashion_mnist, mnist, read_idx
from .images import ImageData, digits, load, resize_images
from .synthetic import linear_regression_data, logistic_regression_data, sine_regression_data

__all__ = [
    "ChecksumError",
    "ImageData",
    "digits",
    "download",
    "fashion_mnist",
    "linear_regression_data",
    "load",
    "logistic_regression_data",
    "mnist",
    "read_idx",
    "resize_images",
    "sine_regression_data",
]
