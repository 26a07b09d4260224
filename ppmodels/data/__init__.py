"""Datasets as tensors: the embedded digits default, MNIST and Fashion-MNIST from IDX files."""

from .idx import ChecksumError, download, fashion_mnist, mnist, read_idx
from .images import ImageData, digits, load, resize_images

__all__ = [
    "ChecksumError",
    "ImageData",
    "digits",
    "download",
    "fashion_mnist",
    "load",
    "mnist",
    "read_idx",
    "resize_images",
]
