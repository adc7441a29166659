"""A user's own model for the --model tests: `tests.models.tiny_external:build`."""

import torch
from torch import nn


def build() -> nn.Module:
    """A 2x2 grey image -> 3 logits ReLU network (seeded, so every call gives the same weights)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))


def not_a_model() -> str:
    return "oops"


def broken() -> nn.Module:
    raise RuntimeError("no GPU here")
