"""Small networks exported to ONNX by the tests themselves (never third-party files)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class VnncompLike(nn.Module):
    """(N, 16) inputs normalised by (x - mean) / std, reshaped to (N, 1, 4, 4), conv, ReLU,
    flatten, two Linear layers: the shape of VNN-COMP's small image networks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.fc1 = nn.Linear(48, 10)
        self.fc2 = nn.Linear(10, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ((x - 0.25) / 0.5).reshape(-1, 1, 4, 4)
        x = torch.relu(self.conv(x)).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


def mlp(seed: int = 0, sizes: tuple[int, ...] = (6, 12, 12, 3)) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers).eval()


def cnn(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():  # non-trivial running statistics
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), bn, nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, stride=1), nn.Sigmoid(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4, 5), nn.Tanh(),
        nn.Linear(5, 3),
    ).eval()


def export(model: nn.Module, shape: tuple[int, ...], path: Path, *, dynamic_batch: bool = False) -> Path:
    """torch.onnx.export (the TorchScript exporter, no constant folding so that BN stays a node)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, *shape),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], do_constant_folding=False,
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}} if dynamic_batch else None)
    return path
