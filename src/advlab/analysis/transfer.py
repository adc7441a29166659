"""Distortion and transfer metrics (Szegedy et al. 2013, Sec. 4.2, Tables 1-4).

- distortion(x, x') = sqrt(sum_i (x'_i - x_i)^2 / n), n the number of pixels (the paper's
  "average distortion", or the stddev of the perturbation when its mean is ~0).
- The error rate of a model on a set of (possibly perturbed) images with their true labels;
  a transfer table holds the error of every model (columns) on every set (rows).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from advlab.models.inference import predict


def distortion(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """Per example sqrt(sum (x' - x)^2 / n)."""
    r = (x_adv - x).flatten(1).double()
    return r.norm(dim=1) / math.sqrt(r.shape[1])


def error_rate_on(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of `images` whose predicted label is not `labels` (nan for an empty set)."""
    if len(labels) == 0:
        return float("nan")
    return float((predict(model, images) != labels).double().mean())


def transfer_table(
    sets: Mapping[str, tuple[torch.Tensor, torch.Tensor]], models: Mapping[str, nn.Module]
) -> dict[str, dict[str, float]]:
    """`table[set][model]`: the error of `model` on the images of `set` (images, true labels)."""
    return {
        row: {column: error_rate_on(model, images, labels) for column, model in models.items()}
        for row, (images, labels) in sets.items()
    }
