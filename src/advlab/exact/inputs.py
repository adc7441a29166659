"""The checks and float64 set-up shared by the exact solvers (done before any work)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from advlab.errors import InputError
from advlab.exact.relu_network import check_fixed
from advlab.models.layers import as_multiclass_logits
from advlab.validation import check_bounds, check_images, check_labels, check_positive


@dataclass(frozen=True)
class Prepared:
    """A float64 CPU copy of the model (eval mode, frozen), the images in float64, the labels,
    the clean float64 logits, and the checked bounds."""

    model64: nn.Module
    x64: torch.Tensor
    labels: torch.Tensor
    logits: torch.Tensor
    bounds: tuple[float, float]


def check_time_limit(time_limit: float) -> float:
    """Seconds > 0; math.inf for no limit."""
    return math.inf if time_limit == math.inf else check_positive("time_limit", time_limit)


def prepare(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, bounds: tuple[float, float]) -> Prepared:
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_fixed(model)
    bounds = check_bounds(bounds)
    x64 = check_images("images", images, bounds).detach().cpu().double()
    labels = check_labels("labels", labels, len(x64)).cpu()
    model64 = copy.deepcopy(model).cpu().double().eval().requires_grad_(False)
    with torch.no_grad():
        logits = torch.cat([as_multiclass_logits(model64(chunk)) for chunk in x64.split(1024)])
    labels = check_labels("labels", labels, len(x64), logits.shape[1])
    return Prepared(model64, x64, labels, logits, bounds)


def linf_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).flatten(1).abs().amax(1) if a.numel() else torch.zeros(len(a), dtype=a.dtype)

