"""The labelled image data set type and image resizing, shared by the embedded digits and the
IDX reader."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ImageData:
    """A labelled image dataset split into train and test tensors.

    :ivar train_x: ``(N, 1, H, W)`` float32 in [0, 1]
    :ivar train_y: ``(N,)`` int64 labels in ``[0, num_classes)``
    :ivar test_x: ``(M, 1, H, W)`` float32 in [0, 1]
    :ivar test_y: ``(M,)`` int64
    :ivar name: a short name, e.g. ``"digits"``
    :ivar num_classes: number of classes
    :ivar class_names: a name per class
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    name: str
    num_classes: int
    class_names: tuple

    @property
    def image_shape(self) -> tuple:
        """``(C, H, W)`` of one image."""
        return tuple(self.train_x.shape[1:])

    def train(self) -> torch.utils.data.TensorDataset:
        return torch.utils.data.TensorDataset(self.train_x, self.train_y)

    def test(self) -> torch.utils.data.TensorDataset:
        return torch.utils.data.TensorDataset(self.test_x, self.test_y)


def resize_images(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Resize ``(N, C, H, W)`` images to ``image_size`` square with bilinear interpolation,
    clamped back to [0, 1]."""
    if images.shape[-1] == image_size and images.shape[-2] == image_size:
        return images
    out = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return out.clamp_(0.0, 1.0)
