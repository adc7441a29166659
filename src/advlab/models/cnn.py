"""A small LeNet-style convolutional network for 28 x 28 grey images.

conv 5x5 (c1) -> ReLU -> 2x2 max-pool -> conv 5x5 (c2) -> ReLU -> 2x2 max-pool -> linear (hidden)
-> ReLU -> linear logits. The layout of Madry et al. 2017's MNIST network at a quarter of its
width and without padding (16 / 32 channels, 128 hidden units by default), so that an epoch
on 6,309 images takes about one second on one CPU core.
"""

from __future__ import annotations

import torch
from torch import nn

from advlab.errors import InputError
from advlab.models.registry import register


class SmallCNN(nn.Module):
    def __init__(
        self, channels: int = 1, conv1: int = 16, conv2: int = 32, hidden: int = 128, num_classes: int = 10, size: int = 28
    ) -> None:
        super().__init__()
        side = ((size - 4) // 2 - 4) // 2  # two valid 5x5 convolutions, each followed by a 2x2 pool
        if side < 1 or min(channels, conv1, conv2, hidden, num_classes) < 1:
            raise InputError(f"SmallCNN: bad sizes (image side {size}, channels {conv1}/{conv2}, hidden {hidden})")
        self.features = nn.Sequential(
            nn.Conv2d(channels, conv1, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(conv1, conv2, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(conv2 * side * side, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register(
    "cnn",
    description="small CNN conv16-conv32-fc128 (5x5 convolutions, max-pooling, ReLU)",
    training={"epochs": 8, "lr": 1e-3, "batch_size": 64},
    channels=1,
    conv1=16,
    conv2=32,
    hidden=128,
    num_classes=10,
    size=28,
)
def small_cnn(channels: int, conv1: int, conv2: int, hidden: int, num_classes: int, size: int) -> nn.Module:
    return SmallCNN(channels, conv1, conv2, hidden, num_classes, size)
