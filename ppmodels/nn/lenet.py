from __future__ import annotations

import torch
from torch import nn

from .._spec import recorded
from .._validate import check_positive_float, check_positive_int


@recorded
class LeNet5(nn.Module):
    """LeNet-5 as in MindSpore's model zoo: two 5x5 valid convolutions (6 and 16 channels,
    no bias) each followed by ReLU and 2x2 max pooling, then dense layers 400-120-84-classes.

    :param int num_classes: number of outputs (logits).
    :param int in_channels: image channels.
    :param int image_size: 32 (the classic input) or 28 (the first convolution then pads by 2).
    :param float input_mean: subtracted from the input first (e.g. the training images' mean).
    :param float input_std: the input is then divided by this (e.g. their standard deviation).

    >>> LeNet5(10)(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 32,
        input_mean: float = 0.0,
        input_std: float = 1.0,
    ):
        super().__init__()
        if isinstance(input_mean, bool) or not isinstance(input_mean, (int, float)):
            raise TypeError(f"`input_mean` must be a number, but got {input_mean!r}")
        self.input_mean, self.input_std = float(input_mean), check_positive_float(input_std, "input_std")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.in_channels = check_positive_int(in_channels, "in_channels")
        if isinstance(image_size, bool) or not isinstance(image_size, int):
            raise TypeError(f"`image_size` must be 28 or 32, but got {image_size!r} ({type(image_size).__name__})")
        if image_size not in (28, 32):
            raise ValueError(f"`image_size` must be 28 or 32, but got {image_size}")
        self.image_size = size = image_size
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2 if size == 28 else 0, bias=False)
        self.conv2 = nn.Conv2d(6, 16, 5, bias=False)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2, 2)
        self.flatten = nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(
                f"LeNet5 takes floating-point images, but got {getattr(x, 'dtype', type(x).__name__)}; convert with "
                "x.float() (and / 255 for 8-bit images)"
            )
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"LeNet5 takes images of shape (N, {', '.join(map(str, expected))}) (built with in_channels="
                f"{self.in_channels}, image_size={self.image_size}), but got {shape}"
                + (
                    "; add the channel dimension with x.unsqueeze(1)"
                    if x.dim() == 3 and tuple(x.shape[1:]) == expected[1:]
                    else ""
                )
            )
        if self.input_mean != 0.0 or self.input_std != 1.0:
            x = (x - self.input_mean) / self.input_std
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = self.flatten(x)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)
