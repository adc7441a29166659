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

import numpy as np
import torch
from scipy import sparse
from scipy.optimize import linprog
from torch import nn

from advlab.errors import InputError, SolverError
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


def _first_crossing(w: torch.Tensor, v: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Row-wise smallest s >= 0 with F(s) = sum_i min(s w_i, v_i) >= m (w, v >= 0, 0 < m <= sum v).

    F is concave, piecewise linear, non-decreasing, with breakpoints beta_i = v_i / w_i; at the
    sorted breakpoints F(beta_j) = sum_{i<=j} v_i + beta_j * sum_{i>j} w_i, and between the last
    breakpoint below m and the first at or above it F is linear, so s is solved for exactly.
    """
    beta = torch.where(w > 0, v / w.clamp_min(torch.finfo(w.dtype).tiny), torch.inf)
    beta, order = beta.sort(dim=1)
    w, v = w.gather(1, order), v.gather(1, order)
    saturated = v.cumsum(1)
    slope = w.sum(1, keepdim=True) - w.cumsum(1)
    value = torch.where(torch.isfinite(beta), saturated + beta.nan_to_num(posinf=0.0) * slope, saturated)
    j = (value >= m.unsqueeze(1)).int().argmax(1, keepdim=True)  # first crossing
    prev = (j - 1).clamp_min(0)
    has_prev = j > 0
    saturated_prev = torch.where(has_prev, saturated.gather(1, prev), 0.0)
    slope_prev = torch.where(has_prev, slope.gather(1, prev), w.sum(1, keepdim=True))
    beta_prev = torch.where(has_prev, beta.gather(1, prev), 0.0)
    s = (m.unsqueeze(1) - saturated_prev) / slope_prev.clamp_min(torch.finfo(w.dtype).tiny)
    return torch.minimum(s.clamp_min(0.0).maximum(beta_prev), beta.gather(1, j)).squeeze(1)


def _halfspace_step(a: torch.Tensor, m: torch.Tensor, cap: torch.Tensor, norm: str) -> torch.Tensor:
    """The minimal r (rows) with a.r >= m > 0 and 0 <= sign(a_i) r_i <= cap_i, assumed reachable."""
    alpha, sign = a.abs(), torch.sign(a)
    if norm == "l2":
        t = _first_crossing(alpha * alpha, alpha * cap, m)
        return sign * torch.minimum(t.unsqueeze(1) * alpha, cap)
    if norm == "linf":
        eps = _first_crossing(alpha, alpha * cap, m)
        return sign * torch.minimum(eps.unsqueeze(1), cap)
    order = alpha.argsort(dim=1, descending=True, stable=True)
    alpha_s, cap_s = alpha.gather(1, order), cap.gather(1, order)
    gain = (alpha_s * cap_s).cumsum(1)
    j = (gain >= m.unsqueeze(1)).int().argmax(1, keepdim=True)
    gain_prev = torch.where(j > 0, gain.gather(1, (j - 1).clamp_min(0)), 0.0)
    partial = ((m.unsqueeze(1) - gain_prev) / alpha_s.gather(1, j)).minimum(cap_s.gather(1, j))
    index = torch.arange(a.shape[1], device=a.device).unsqueeze(0)
    step = torch.where(index < j, cap_s, torch.where(index == j, partial, 0.0))
    return sign * torch.zeros_like(step).scatter(1, order, step)


def _distance(r: torch.Tensor, norm: str) -> torch.Tensor:
    return {"l2": lambda: r.norm(dim=1), "linf": lambda: r.abs().amax(dim=1), "l1": lambda: r.abs().sum(1)}[norm]()


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
    r = torch.where(solve.unsqueeze(1), _halfspace_step(a, safe_m, cap, norm), 0.0)
    distance = torch.where(feasible, _distance(r, norm), torch.inf)
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
    elif norm == "l2":
        distance, _, _ = _polytope_l2(x, a, m, bounds)
        _, r, feasible = _polytope_l2(x, a, m_witness, bounds)
    else:
        distance, _, _ = _polytope_lp(x, a, m, norm, bounds)
        _, r, feasible = _polytope_lp(x, a, m_witness, norm, bounds)
    return torch.where(feasible, distance, torch.inf), r, feasible


def _polytope_l2(
    x: torch.Tensor, a: torch.Tensor, m: torch.Tensor, bounds: Bounds, *, iterations: int = 200
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """min ||r||_2 s.t. A r >= m, x + r in the box, batched: projected Newton on the dual.

    Dual: maximise g(lam) = lam.m - sum_i phi_i((A^T lam)_i) over lam >= 0, where
    phi_i(v) = max_{r_i in box} (v r_i - r_i^2 / 2) and r(lam) = clip(A^T lam) is the primal
    point. g is concave and piecewise quadratic with gradient m - A r(lam) and Hessian
    -A D A^T (D: coordinates not at a bound), so Newton steps on the multipliers not held at 0
    (Bertsekas 1982) with a projected Armijo search end exactly on the optimum. Each example
    finishes with a certificate: r(lam) feasible (optimal by duality), or lam a Farkas
    witness that no point of the box satisfies A r >= m.
    """
    low, high = bounds[0] - x, bounds[1] - x
    scale = a.abs().sum(-1).amax(1) * max(abs(bounds[0]), abs(bounds[1])) + m.abs().amax(1) + 1.0
    tol = 1e-12 * scale

    def primal(lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = torch.einsum("nk,nkd->nd", lam, a)
        return v, torch.minimum(torch.maximum(v, low), high)

    def dual(lam: torch.Tensor) -> torch.Tensor:
        v, r = primal(lam)
        return (lam * m).sum(1) - (v * r - 0.5 * r * r).sum(1)

    def certificates(lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        v, r = primal(lam)
        residual = m - torch.einsum("nkd,nd->nk", a, r)
        feasible = residual.amax(1) <= tol
        best_in_box = torch.maximum(v * low, v * high).sum(1)  # max of lam.A r over the box
        infeasible = (lam * m).sum(1) - best_in_box > tol * lam.sum(1).clamp_min(1.0)
        return residual, feasible, infeasible

    lam = torch.zeros_like(m)
    eye = torch.eye(m.shape[1], dtype=m.dtype, device=m.device)
    for _ in range(iterations):
        grad, feasible, infeasible = certificates(lam)
        projected = torch.where(lam > 0, grad.abs(), grad.clamp_min(0.0)).amax(1)
        done = (feasible & (projected <= tol)) | infeasible
        if bool(done.all()):
            break
        v, _ = primal(lam)
        free = ((v > low) & (v < high)).to(m.dtype)
        hessian = torch.einsum("nkd,nd,njd->nkj", a, free, a)
        moving = ~((lam <= 0) & (grad <= 0))
        pair = moving.unsqueeze(2) & moving.unsqueeze(1)
        ridge = 1e-13 * hessian.diagonal(dim1=1, dim2=2).sum(1).clamp_min(1.0)
        hessian = torch.where(pair, hessian, 0.0) + eye * torch.where(moving, ridge.unsqueeze(1), 1.0).unsqueeze(2)
        step = torch.linalg.solve(hessian, torch.where(moving, grad, 0.0).unsqueeze(2)).squeeze(2)
        step = torch.where(done.unsqueeze(1), 0.0, step)
        start = dual(lam)
        alpha = torch.ones_like(start)
        for _ in range(60):  # projected Armijo backtracking, per example
            candidate = (lam + alpha.unsqueeze(1) * step).clamp_min(0.0)
            ok = dual(candidate) >= start + 1e-4 * (grad * (candidate - lam)).sum(1)
            if bool(ok.all()):
                break
            alpha = torch.where(ok, alpha, 0.5 * alpha)
        lam = torch.where(ok.unsqueeze(1), candidate, lam)
    _, feasible, infeasible = certificates(lam)
    unresolved = (~feasible & ~infeasible).nonzero().flatten()
    if unresolved.numel():
        raise SolverError(
            f"the exact L2 solver reached no certificate for {unresolved.numel()} example(s) "
            f"(first: index {int(unresolved[0])}) in {iterations} Newton steps"
        )
    _, r = primal(lam)
    r = torch.where(feasible.unsqueeze(1), r, 0.0)
    return torch.where(feasible, r.norm(dim=1), torch.inf), r, feasible


def _polytope_lp(
    x: torch.Tensor, a: torch.Tensor, m: torch.Tensor, norm: str, bounds: Bounds
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """min ||r||_1 or ||r||_inf s.t. A r >= m, x + r in the box: one HiGHS LP per example.

    L-inf: variables (r, t), minimise t with -t <= r_i <= t. L1: r = p - q with p, q >= 0,
    minimise sum(p + q). Dual simplex returns a vertex, accurate to rounding.
    """
    n, k, d = a.shape
    low, high = (bounds[0] - x).cpu().numpy(), (bounds[1] - x).cpu().numpy()
    a_np, m_np = a.cpu().numpy(), m.cpu().numpy()
    options = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}
    eye = sparse.identity(d, format="csr")
    r = np.zeros((n, d))
    feasible = np.zeros(n, dtype=bool)
    for i in range(n):  # an LP per example: an infeasible one must not sink the others
        if norm == "linf":
            ones = sparse.csr_matrix(np.ones((d, 1)))
            rows = sparse.csr_matrix(np.hstack([-a_np[i], np.zeros((k, 1))]))
            a_ub = sparse.vstack([sparse.hstack([eye, -ones]), sparse.hstack([-eye, -ones]), rows])
            b_ub = np.concatenate([np.zeros(2 * d), -m_np[i]])
            cost = np.r_[np.zeros(d), 1.0]
            box = list(zip(low[i], high[i], strict=True)) + [(0.0, None)]
        else:
            a_ub = sparse.csr_matrix(np.hstack([-a_np[i], a_np[i]]))
            b_ub = -m_np[i]
            cost = np.ones(2 * d)
            box = [(0.0, h) for h in high[i]] + [(0.0, -lo) for lo in low[i]]
        result = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=box, method="highs-ds", options=options)
        if result.status == 2:
            continue
        if result.status != 0:
            raise SolverError(f"HiGHS failed on example {i}: {result.message}")
        feasible[i] = True
        r[i] = result.x[:d] if norm == "linf" else result.x[:d] - result.x[d:]
    r_t = torch.from_numpy(r).to(x.device)
    feasible_t = torch.from_numpy(feasible).to(x.device)
    return torch.where(feasible_t, _distance(r_t, norm), torch.inf), r_t, feasible_t
