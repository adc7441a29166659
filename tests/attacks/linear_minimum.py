"""Exact minimal adversarial distances of linear models, by bisection, to grade attacks against.

For logits W x + b the prediction leaves y once some (w_k - w_y).r >= z_y - z_k. The most that
a.r reaches over the eps-ball ∩ box is a.(max_linear(x, a, eps) - x) (advlab.exact), which is
non-decreasing in eps, so the smallest eps per class follows by bisection; the untargeted
minimum is the smallest over k != y, the targeted one (binary models) the one for the target.
"""

from __future__ import annotations

import torch
from torch import nn

from advlab.exact import linear_weights, max_linear_l2, max_linear_linf


def logits_of(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    weight, bias = (t.double() for t in linear_weights(model))
    if weight.shape[0] == 1:  # a single logit z is read as [0, z]
        weight, bias = torch.cat([torch.zeros_like(weight), weight]), torch.cat([torch.zeros_like(bias), bias])
    return weight, bias


def class_distance(
    x: torch.Tensor, a: torch.Tensor, need: torch.Tensor, norm: str, bounds=(0.0, 1.0), iterations: int = 50
) -> torch.Tensor:
    """Per row: the smallest eps with max a.r over the eps-ball ∩ box >= need (inf if none)."""
    width = bounds[1] - bounds[0]
    high = torch.full_like(need, width if norm == "linf" else width * x.shape[1] ** 0.5)
    low = torch.zeros_like(need)
    maximiser = max_linear_linf if norm == "linf" else max_linear_l2

    def reach(eps: torch.Tensor) -> torch.Tensor:
        return ((maximiser(x, a, eps[:, None], bounds) - x) * a).sum(1)  # eps broadcasts per row

    feasible = reach(high) >= need
    for _ in range(iterations):
        middle = (low + high) / 2
        ok = reach(middle) >= need
        high, low = torch.where(ok, middle, high), torch.where(ok, low, middle)
    return torch.where(need <= 0, torch.zeros_like(high), torch.where(feasible, high, torch.inf))


def minimal_distance(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, bounds=(0.0, 1.0), targets: torch.Tensor | None = None
) -> torch.Tensor:
    """Exact minimal ||x' - x|| (norm) to an x' in the box classified != y (or == targets)."""
    weight, bias = logits_of(model)
    x = x.flatten(1).double()
    z = x @ weight.T + bias
    classes = range(weight.shape[0]) if targets is None else [None]
    best = torch.full((len(x),), torch.inf, dtype=torch.float64)
    for k in classes:
        k_row = targets if k is None else torch.full_like(y, k)
        a = weight[k_row] - weight[y]
        need = z.gather(1, y[:, None]).squeeze(1) - z.gather(1, k_row[:, None]).squeeze(1)
        distance = class_distance(x, a, need, norm, bounds)
        best = torch.minimum(best, torch.where(k_row == y, torch.inf, distance))
    return best
