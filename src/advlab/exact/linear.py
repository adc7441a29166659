"""Exact optima for linear models, to grade attacks against.

For a linear score s(x) = a.x + c the loss of logistic regression is a monotone function of
s, so the loss-maximising perturbation is the maximiser of a.r over the budget intersected
with the box [lo, hi]^n:

- L-inf: separable, so x*_i = clip(x_i + eps * sign(a_i), lo, hi) (Goodfellow et al. 2014,
  Sec. 3; the clip keeps the point in the eps-ball because it only shortens steps).
- L2: by the KKT conditions r_i = clip(t * a_i, lo - x_i, hi - x_i) for the t >= 0 at which
  ||r||_2 = eps (or every coordinate at its bound, if that is shorter); t is found by
  bisection, ||r(t)|| being non-decreasing in t.
"""

from __future__ import annotations

import torch
from torch import nn

from advlab.attacks.base import Bounds
from advlab.errors import InputError


def linear_weights(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, b) of a model whose only parameterised layer is one nn.Linear (W: (C, n))."""
    layers = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    if len(layers) != 1 or not isinstance(layers[0], nn.Linear):
        raise InputError("exact linear solutions need a model whose only parameterised layer is nn.Linear")
    return layers[0].weight.detach(), layers[0].bias.detach()


def max_linear_linf(x: torch.Tensor, a: torch.Tensor, eps: float, bounds: Bounds = (0.0, 1.0)) -> torch.Tensor:
    """argmax of a.x' over ||x' - x||_inf <= eps and x' in the box; a broadcasts against x."""
    return (x + eps * torch.sign(a)).clamp(bounds[0], bounds[1])


def max_linear_l2(x: torch.Tensor, a: torch.Tensor, eps: float, bounds: Bounds = (0.0, 1.0)) -> torch.Tensor:
    """argmax of a.x' over ||x' - x||_2 <= eps and x' in the box, batched over the first axis.

    r(t) = clip(t * a, lo - x, hi - x); coordinate i saturates at t_i = cap_i / |a_i|. Between
    sorted breakpoints ||r(t)||^2 = S + t^2 A (S: saturated squares, A: sum of a_i^2 still free),
    so the t with ||r(t)|| = eps is found exactly on the first segment that reaches eps.
    """
    shape, dtype = x.shape, x.dtype
    x = x.flatten(1).double()
    a = torch.broadcast_to(a.double().reshape(1, -1) if a.ndim == 1 else a.flatten(1).double(), x.shape)
    # The maximiser is scale-free in a: normalise rows, and drop entries too small to square.
    a = a / a.abs().amax(dim=1, keepdim=True).clamp_min(1e-300)
    a = torch.where(a.abs() < 1e-150, torch.zeros_like(a), a)
    low, high = bounds[0] - x, bounds[1] - x
    magnitude = a.abs()
    cap = torch.where(a > 0, high, -low)
    breaks = torch.where(magnitude > 0, cap / magnitude.clamp_min(1e-300), torch.zeros_like(cap))
    order = breaks.argsort(dim=1)
    t_sorted = breaks.gather(1, order)
    saturated = torch.where(magnitude > 0, cap.square(), torch.zeros_like(cap)).gather(1, order).cumsum(1)
    a_squared = a.square().gather(1, order)
    suffix = a_squared.flip(1).cumsum(1).flip(1)  # sum of a_j^2 for j >= k, no cancellation
    free = torch.cat([suffix[:, 1:], torch.zeros_like(suffix[:, :1])], dim=1)
    reaches = saturated + t_sorted.square() * free >= eps**2
    k = reaches.int().argmax(dim=1, keepdim=True)  # first breakpoint at which ||r|| >= eps
    before = (k - 1).clamp_min(0)
    s_prev = torch.where(k > 0, saturated.gather(1, before), torch.zeros_like(before, dtype=x.dtype))
    a_prev = torch.where(k > 0, free.gather(1, before), suffix[:, :1])
    t = ((eps**2 - s_prev) / a_prev.clamp_min(1e-300)).clamp_min(0).sqrt()
    t = torch.where(reaches.any(dim=1, keepdim=True), t, t_sorted[:, -1:])  # else: every bound hit
    r = torch.minimum(torch.maximum(t * a, low), high)
    return (x + r).reshape(shape).to(dtype)


def logistic_loss_direction(weight: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Direction a with loss increasing in a.x for binary logistic regression with labels y.

    loss(x, y) = softplus(-(2y - 1)(w.x + b)), so a = (1 - 2y) w, one row per example.
    """
    w = weight.reshape(1, -1)
    return (1 - 2 * y.to(w.dtype)).unsqueeze(1) * w
