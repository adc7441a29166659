"""Layers shared by the models, and the adapter that lets every attack see >= 2 logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from advlab.errors import InputError


class Normalize(nn.Module):
    """(x - mean) / std per channel, as the model's first layer, so attacks always see [0, 1]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if any(s <= 0 for s in std):
            raise InputError(f"Normalize: std must be positive, got {list(std)}")
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def as_multiclass_logits(out: torch.Tensor) -> torch.Tensor:
    """Map a model's output to (N, C) logits with C >= 2.

    A single logit z (shape (N,) or (N, 1)) becomes [0, z]: softmax then gives
    P(class 1) = sigmoid(z), so cross-entropy on [0, z] is exactly logistic loss and every
    attack is written once, for the multiclass case.
    """
    if out.ndim == 1:
        out = out.unsqueeze(1)
    if out.ndim != 2:
        raise InputError(f"model must output (N, C) logits, got shape {tuple(out.shape)}")
    if out.shape[1] == 1:
        return torch.cat([torch.zeros_like(out), out], dim=1)
    return out
