"""Small random networks for the exact tests (seeded, steep enough to have close boundaries)."""

from __future__ import annotations

import torch
from torch import nn

from advlab.models import Normalize


def conv_net(seed: int, *, pool: str = "max", scale: float = 3.0, channels: int = 3) -> nn.Module:
    """A 1x8x8 -> 4-class net: Normalize, conv, ReLU, pool, conv (padded), ReLU, avg-pool, linear,
    ReLU, linear, with its weights scaled so that decision boundaries are near the inputs."""
    torch.manual_seed(seed)
    pooling = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)
    model = nn.Sequential(
        Normalize([0.4], [0.3]),
        nn.Conv2d(1, channels, 3), nn.ReLU(), pooling,
        nn.Conv2d(channels, 4, 2, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(16, 10), nn.ReLU(), nn.Linear(10, 4),
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model


class Nested(nn.Module):
    """Two sub-modules called from forward, with a reshape written in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True))
        self.head = nn.Linear(2 * 2 * 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).view(x.shape[0], -1)).squeeze(1)


def scaled_mlp(seed: int) -> nn.Sequential:
    """A 12-16-16-3 ReLU net with weights scaled by 3: its decision boundary is close to many inputs."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    with torch.no_grad():
        for layer in model[::2]:
            layer.weight.mul_(3)
    return model


def random_mlp(seed: int, widths: tuple[int, ...], *, scale: float = 2.0) -> nn.Sequential:
    """A ReLU MLP with layer widths `widths` (input first, classes last), weights scaled by `scale`."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(widths) - 2 else [])
    model = nn.Sequential(*layers).eval()
    with torch.no_grad():
        for layer in model[::2]:
            layer.weight.mul_(scale)
    return model
