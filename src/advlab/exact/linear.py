"""Exact optima for linear models, to grade attacks against.

For a linear score s(x) = a.x + c the loss of logistic regression is a monotone function of
s, so the loss-maximising perturbation is the maximiser of a.r over the budget intersected
with the box [lo, hi]^n:

- L-inf: separable, so x*_i = clip(x_i + eps * sign(a_i), lo, hi) (Goodfellow et al. 2014,
  Sec. 3; the clip keeps the point in the eps-ball because it only shortens steps).
- L2: by the KKT conditions r_i = clip(t * a_i, lo - x_i, hi - x_i) for the t >= 0 at which
  ||r||_2 = eps (or every coordinate at its bound, if that is shorter); t is found by
  bisection, ||r(t)|| being non-decreasing in t.

`minimal_perturbation` gives the exact smallest adversarial perturbation of a linear model in
L2, L-inf or L1 within the box (untargeted or targeted), with a float64 witness; see below.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advlab.errors import InputError
from advlab.attacks.geometry import geometry
from advlab.models.linear import linear_weights
from advlab.validation import Bounds, check_labels, check_norm, check_positive


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


# ---- exact minimal adversarial perturbations ---------------------------------------------
#
# For logits z = W x + b the set where the prediction is not y (or is k) is a union
# (intersection) of half-spaces (w_k - w_y).x' + b_k - b_y >= 0, so the smallest perturbation r
# reaching it is a small convex program. With one constraint a.r >= m and the box
# lo - x <= r <= hi - x, write cap_i >= 0 for how far coordinate i can move in the direction
# sign(a_i) that helps:
#
# - L2: by the KKT conditions r = clip(t a, lo - x, hi - x) for the smallest t >= 0 with
#   a.r(t) = m; a.r(t) = sum_i min(t a_i^2, |a_i| cap_i) is piecewise linear and non-decreasing
#   in t, so t is read off exactly from its sorted breakpoints cap_i / |a_i|.
# - L-inf: the most a.r can reach within ||r||_inf <= eps is sum_i min(eps |a_i|, |a_i| cap_i),
#   the same kind of function, with breakpoints cap_i.
# - L1: a fractional knapsack: spend the budget on the coordinates with the largest |a_i|
#   (gain per unit of L1) first, each up to its cap.
#
# Untargeted: the minimum over k != y of the single-constraint problem. Targeted (a given k):
# all constraints z_k >= z_j, j != k, at once; L2 by projected Newton on the dual (K = C - 1
# multipliers, exact once the active pieces are found), L1 and L-inf as linear programs (HiGHS).


@dataclass(frozen=True)
class MinimalPerturbation:
    """Exact minimal adversarial perturbations, one per example.

    distance: the infimum of ||x' - x|| over adversarial x' in the box (float64; inf where no
    point of the box is adversarial, 0 where x already is). x_adv: a witness, pushed a hair
    (`slack`) past the decision boundary so that it is adversarial when the logits are
    recomputed in float64 (x itself where unreachable). feasible: False where unreachable.
    target: the class the witness is classified as, in float64 (-1 where unreachable).
    """

    distance: torch.Tensor
    x_adv: torch.Tensor
    feasible: torch.Tensor
    target: torch.Tensor
    norm: str


def multiclass_weights(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, b) in float64 with C >= 2 rows; a one-logit model z becomes logits [0, z]."""
    weight, bias = linear_weights(model)
    weight, bias = weight.double(), bias.double()
    if weight.shape[0] == 1:
        weight = torch.cat([torch.zeros_like(weight), weight])
        bias = torch.cat([torch.zeros_like(bias), bias])
    return weight, bias


def _slack(a: torch.Tensor, m: torch.Tensor, bounds: Bounds, rel: float) -> torch.Tensor:
    """A margin far above float64 rounding in recomputing a.x' + const, far below any distance."""
    scale = a.abs().sum(-1) * max(abs(bounds[0]), abs(bounds[1])) + m.abs() + 1.0
    return rel * scale


def min_norm_halfspace(
    x: torch.Tensor, a: torch.Tensor, m: torch.Tensor, *, norm: str = "l2", bounds: Bounds = (0.0, 1.0)
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact min ||r|| subject to a.r >= m and x + r in [lo, hi]^n, row by row, in float64.

    x, a: (R, n); m: (R,). Returns (distance, r, feasible): distance is 0 where m <= 0 and inf
    where even the whole box cannot reach a.r >= m (r is then 0).
    """
    x, a, m = x.double(), a.double(), m.double()
    check_norm(norm)
    cap = torch.where(a > 0, bounds[1] - x, torch.where(a < 0, x - bounds[0], 0.0)).clamp_min(0.0)
    reach = (a.abs() * cap).sum(1)
    needed = m > 0
    feasible = ~needed | (reach >= m)
    solve = needed & feasible
    safe_m = torch.where(solve, m, reach.clamp_min(1.0) * 0.5)  # any reachable m > 0 for the rest
    shape = geometry(norm)
    r = torch.where(solve.unsqueeze(1), shape.halfspace_step(a, safe_m, cap), 0.0)
    distance = torch.where(feasible, shape.distance(r), torch.inf)
    return distance, r, feasible


def minimal_perturbation(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    norm: str = "l2",
    targets: torch.Tensor | None = None,
    bounds: Bounds = (0.0, 1.0),
    slack: float = 1e-11,
) -> MinimalPerturbation:
    """The exact smallest perturbation (in `norm`) that changes a linear model's prediction.

    Untargeted: prediction != y; targeted: prediction == targets. Works for binary logistic
    regression (one logit) and softmax regression; all arithmetic in float64. `slack` is the
    relative margin by which witnesses are pushed past the boundary.
    """
    weight, bias = multiclass_weights(model)
    return affine_minimal_perturbation(weight, bias, x, y, norm=norm, targets=targets, bounds=bounds, slack=slack)


def affine_minimal_perturbation(
    weight: torch.Tensor,
    bias: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    norm: str = "l2",
    targets: torch.Tensor | None = None,
    bounds: Bounds = (0.0, 1.0),
    slack: float = 1e-11,
) -> MinimalPerturbation:
    """`minimal_perturbation` for the logits z = W x + b (W: (C, n), C >= 2), x of any shape (N, ...)."""
    check_norm(norm)
    check_positive("slack", slack)
    weight, bias = weight.double(), bias.double()
    num_classes = weight.shape[0]
    shape = x.shape
    x = x.detach().flatten(1).double().to(weight.device)
    if x.shape[1] != weight.shape[1]:
        raise InputError(f"x has {x.shape[1]} features but the model expects {weight.shape[1]}")
    if bool((x < bounds[0]).any() | (x > bounds[1]).any()):
        raise InputError(f"x has values outside the bounds {bounds}")
    y = check_labels("y", y, x.shape[0], num_classes).to(weight.device)
    logits = x @ weight.T + bias
    if targets is None:
        distance, r, feasible = _untargeted(x, y, weight, logits, norm, bounds, slack)
    else:
        targets = check_labels("targets", targets, x.shape[0], num_classes).to(weight.device)
        if bool((targets == y).any()):
            raise InputError("targets must differ from the true labels")
        distance, r, feasible = _targeted(x, targets, weight, logits, norm, bounds, slack)
    x_adv = (x + r).clamp(bounds[0], bounds[1])
    target = (x_adv @ weight.T + bias).argmax(1)
    return MinimalPerturbation(distance, x_adv.reshape(shape), feasible, torch.where(feasible, target, -1), norm)


def _untargeted(
    x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, logits: torch.Tensor, norm: str, bounds: Bounds,
    slack: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """min over k != y of the half-space problem (w_k - w_y).r >= z_y - z_k, all k at once."""
    n, c = logits.shape
    a = (weight.unsqueeze(0) - weight[y].unsqueeze(1)).reshape(n * c, -1)  # (N*C, d)
    m = (logits.gather(1, y.unsqueeze(1)) - logits).reshape(-1)
    rows = x.repeat_interleave(c, dim=0)
    distance, _, _ = min_norm_halfspace(rows, a, m, norm=norm, bounds=bounds)
    distance = distance.reshape(n, c).scatter(1, y.unsqueeze(1), torch.inf)
    best, target = distance.min(1)
    pick = torch.arange(n, device=x.device) * c + target
    m_pick = m[pick]
    _, r, feasible = min_norm_halfspace(x, a[pick], m_pick + _slack(a[pick], m_pick, bounds, slack), norm=norm, bounds=bounds)
    return torch.where(feasible, best, torch.inf), r, feasible


def _targeted(
    x: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, logits: torch.Tensor, norm: str, bounds: Bounds,
    slack: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All constraints (w_k - w_j).r >= z_j - z_k for j != k, k the target."""
    n, c = logits.shape
    others = torch.arange(c, device=x.device).expand(n, c)
    others = others[others != targets.unsqueeze(1)].reshape(n, c - 1)  # (N, K)
    a = weight[targets].unsqueeze(1) - weight[others]  # (N, K, d)
    m = logits.gather(1, others) - logits.gather(1, targets.unsqueeze(1))  # (N, K)
    m_witness = m + _slack(a, m, bounds, slack)
    if c == 2:  # a single half-space
        distance, _, _ = min_norm_halfspace(x, a[:, 0], m[:, 0], norm=norm, bounds=bounds)
        _, r, feasible = min_norm_halfspace(x, a[:, 0], m_witness[:, 0], norm=norm, bounds=bounds)
    else:
        shape = geometry(norm)
        distance, _, _ = shape.min_norm_polytope(x, a, m, bounds)
        _, r, feasible = shape.min_norm_polytope(x, a, m_witness, bounds)
    return torch.where(feasible, distance, torch.inf), r, feasible

