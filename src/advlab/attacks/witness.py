"""Adversarial points as witnesses: inside the eps-ball and the box as measured in float64, and
misclassified by the model run in float64.

An attack computes in the images' dtype, so a float32 point x + r lies outside the float64 ball
by the rounding of x +- eps (up to ~1.3e-8 for x in [0, 1]); a point whose margin is that small
may not be adversarial at the point the ball really holds. `into_ball` moves a point into
B(eps) ∩ box so that its distance to x, computed in float64, is at most eps, keeping the dtype
of x: the offset r = point - x is pulled in to radius eps - ROUNDING (L-inf: clamped per
coordinate; L2: scaled) in float64, clipped to the box, and each coordinate is then rounded to
x's dtype toward x (never away from it), so |r_i| does not grow. `confirmed` re-runs the model
in float64 on such points; only the misclassified ones are witnesses.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from advlab.models.inference import set_mode
from advlab.models.layers import as_multiclass_logits

ROUNDING = 4e-16  # more than the float64 rounding of x + r - x for x, r in [-1, 1]
L2_SLACK = 1e-12  # relative: more than the float64 rounding of an L2 norm of up to 10^6 terms


def distance(a: torch.Tensor, b: torch.Tensor, norm: str = "linf") -> torch.Tensor:
    """(N,) float64 distances ||a - b|| per example, computed in float64."""
    diff = (a.double() - b.double()).flatten(1)
    if not diff.numel():
        return torch.zeros(len(a), dtype=torch.float64, device=a.device)
    return diff.abs().amax(1) if norm == "linf" else diff.norm(dim=1)


def into_ball(point: torch.Tensor, x: torch.Tensor, eps: float, bounds: tuple[float, float], norm: str = "linf") -> torch.Tensor:
    """The point moved into B(eps) ∩ box around x, in x's dtype, with float64 distance <= eps."""
    x64 = x.double()
    r = point.double() - x64
    if norm == "linf":
        radius = max(eps - ROUNDING, 0.0)
        r = r.clamp(-radius, radius)
    else:
        radius = max(eps * (1 - L2_SLACK) - ROUNDING, 0.0)
        size = r.flatten(1).norm(dim=1)
        scale = torch.where(size > radius, radius / size.clamp_min(torch.finfo(torch.float64).tiny), torch.ones_like(size))
        r = r * scale.view(-1, *([1] * (r.dim() - 1)))
    moved64 = (x64 + r).clamp(*bounds)
    moved = moved64.to(x.dtype)
    grew = (moved.double() - x64).abs() > (moved64 - x64).abs()  # rounded away from x: one step back
    return torch.where(grew, torch.nextafter(moved, x), moved)


def float64_model(model: nn.Module) -> nn.Module | None:
    """A float64 copy of the model (eval mode, frozen, on its device), or None if it cannot be made."""
    try:
        return copy.deepcopy(model).double().eval().requires_grad_(False)
    except (RuntimeError, TypeError, AttributeError, copy.Error):
        return None


def confirmed(model: nn.Module, points: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """(N,) bool on the CPU: the model's prediction at each point differs from its label. The
    points are fed in the dtype of the model's parameters (float64 for `float64_model`'s copy)."""
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    device = param.device if param is not None else points.device
    dtype = param.dtype if param is not None else points.dtype
    with set_mode(model, False), torch.no_grad():
        pred = [as_multiclass_logits(model(chunk.to(device, dtype))).argmax(1).cpu() for chunk in points.split(batch_size)]
    if not pred:
        return torch.zeros(0, dtype=torch.bool)
    return torch.cat(pred) != labels.cpu()
