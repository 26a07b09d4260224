"""Datasets as tensors: the embedded digits default, MNIST and Fashion-MNIST from IDX files,
GP and sine function families for neural processes, and small synthetic regression and
classification problems."""

from .functions import KERNELS, ContextTargetBatches, FunctionData, gp_functions, kernel_matrix, sine_functions
from .idx import ChecksumError, download, fashion_mnist, mnist, read_idx
from .images import ImageData, digits, load, resize_images
from .semisupervised import SemiSupervisedBatches, split_labelled
from .synthetic import linear_regression_data, logistic_regression_data, mixture_data, sine_regression_data

__all__ = [
    "ChecksumError",
    "ContextTargetBatches",
    "FunctionData",
    "ImageData",
    "KERNELS",
    "SemiSupervisedBatches",
    "digits",
    "download",
    "fashion_mnist",
    "gp_functions",
    "kernel_matrix",
    "linear_regression_data",
    "load",
    "logistic_regression_data",
    "mixture_data",
    "mnist",
    "read_idx",
    "resize_images",
    "sine_functions",
    "sine_regression_data",
    "split_labelled",
]
