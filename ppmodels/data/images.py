"""Image datasets as tensors: the embedded digits default, MNIST and Fashion-MNIST."""

from __future__ import annotations

import numpy as np
import torch

from .._validate import check_choice
from ._image_data import ImageData, resize_images
from .idx import fashion_mnist, mnist

DIGITS_SIZES = (8, 28, 32)


def digits(image_size: int = 8, test_fraction: float = 0.2) -> ImageData:
    """scikit-learn's bundled handwritten digits (1,797 images of 8x8, 10 classes).

    Pixels are scaled from 0..16 to [0, 1]. The train/test split is fixed (stratified by
    label, ``random_state=0``): with the default ``test_fraction`` it is 1,437 / 360.

    :param int image_size: 8 (native), 28 or 32 (bilinear upsampling, e.g. for LeNet-5
        or MindSpore's 32x32 VAE).
    :param float test_fraction: fraction held out for testing, in (0, 1).
    :rtype: ImageData
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if isinstance(image_size, bool) or image_size not in DIGITS_SIZES:
        raise ValueError(f"`image_size` must be one of {DIGITS_SIZES}, but got {image_size!r}")
    if not (isinstance(test_fraction, float) and 0.0 < test_fraction < 1.0):
        raise ValueError(f"`test_fraction` must be a float in (0, 1), but got {test_fraction!r}")
    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    labels = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, random_state=0, stratify=labels
    )
    x = resize_images(torch.from_numpy(images).unsqueeze(1), image_size)
    y = torch.from_numpy(labels)
    return ImageData(
        train_x=x[idx_train].contiguous(),
        train_y=y[idx_train].contiguous(),
        test_x=x[idx_test].contiguous(),
        test_y=y[idx_test].contiguous(),
        name="digits",
        num_classes=10,
        class_names=tuple(str(i) for i in range(10)),
    )


def load(spec: str, image_size: int | None = None, download: bool = False, cache_dir=None) -> ImageData:
    """Load a dataset from a command-line style spec.

    ``"digits"``, ``"mnist:DIR"`` or ``"fashion-mnist:DIR"`` (``DIR`` holds the IDX files;
    with ``download=True`` a missing ``DIR`` part means the cache folder).

    :param int image_size: resize to this square size (digits: 8, 28 or 32; MNIST: any).
    """
    if not isinstance(spec, str):
        raise TypeError(f"`data` must be a string such as 'digits' or 'mnist:DIR', but got {spec!r}")
    name, _, folder = spec.partition(":")
    check_choice(name, "data", ["digits", "mnist", "fashion-mnist"])
    if name == "digits":
        if folder:
            raise ValueError(f"`data`: 'digits' is embedded and takes no folder, but got {spec!r}")
        return digits(image_size=image_size or 8)
    loader = mnist if name == "mnist" else fashion_mnist
    if not folder and not download:
        raise ValueError(
            f"`data`: {name!r} needs the folder holding its IDX files, e.g. '{name}:/path/to/dir' "
            "(or pass download=True to fetch them into the cache folder)"
        )
    data = loader(folder or None, download=download, cache_dir=cache_dir)
    if image_size is not None and image_size != data.image_shape[-1]:
        data = ImageData(
            resize_images(data.train_x, image_size),
            data.train_y,
            resize_images(data.test_x, image_size),
            data.test_y,
            data.name,
            data.num_classes,
            data.class_names,
        )
    return data
