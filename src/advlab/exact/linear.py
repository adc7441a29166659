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


def max_linear_l2(
    x: torch.Tensor, a: torch.Tensor, eps: float, bounds: Bounds = (0.0, 1.0), *, iterations: int = 200
) -> torch.Tensor:
    """argmax of a.x' over ||x' - x||_2 <= eps and x' in the box, batched over the first axis."""
    shape = x.shape
    x = x.flatten(1).double()
    a = torch.broadcast_to(a.double().reshape(1, -1) if a.ndim == 1 else a.flatten(1).double(), x.shape)
    low, high = bounds[0] - x, bounds[1] - x
    span = torch.where(a > 0, high, -low) / a.abs().clamp_min(1e-300)
    t_high = torch.where(a != 0, span, torch.zeros_like(span)).amax(dim=1, keepdim=True)
    t_low = torch.zeros_like(t_high)

    def step(t: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.maximum(t * a, low), high)

    for _ in range(iterations):
        middle = 0.5 * (t_low + t_high)
        too_long = step(middle).norm(dim=1, keepdim=True) > eps
        t_high = torch.where(too_long, middle, t_high)
        t_low = torch.where(too_long, t_low, middle)
    return (x + step(t_low)).reshape(shape)


def logistic_loss_direction(weight: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Direction a with loss increasing in a.x for binary logistic regression with labels y.

    loss(x, y) = softplus(-(2y - 1)(w.x + b)), so a = (1 - 2y) w, one row per example.
    """
    w = weight.reshape(1, -1)
    return (1 - 2 * y.to(w.dtype)).unsqueeze(1) * w
