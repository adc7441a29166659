"""Exact minimal L-inf adversarial distance of small ReLU networks by mixed-integer programming.

For an input x of class y the minimal adversarial distance is

    eps* = min ||x' - x||_inf  over x' in [lo, hi]^n with  z_k(x') >= z_y(x')  for some k != y,

the smallest perturbation that lets another class tie or beat the true one (Tjeng, Xiao &
Tedrake 2019, "Evaluating robustness of neural networks with mixed integer programming").
A ReLU a = max(z, 0) with pre-activation bounds l < 0 < u is exact under a binary d,

    a >= z,  a >= 0,  a <= u d,  a <= z - l (1 - d)          (Tjeng et al., Sec. 4.1),

and a neuron whose bounds do not straddle 0 is linear (l >= 0) or constant zero (u <= 0).
Per example:

1. Upper bound. A bisection over eps of a targeted PGD attack, batched over examples and
   classes, finds points with z_k > z_y; the closest one, moved to the decision boundary by an
   LP over its activation region (where the network is affine), gives the best distance `cap`.
2. Bounds. Every pre-activation is bounded over the box B(eps) = {x' in [lo, hi]^n :
   |x' - x|_inf <= eps} by back-substituting linear relaxations (Zhang et al. 2018, "CROWN"),
   intersected with interval arithmetic. The bounds depend on eps: near eps* most neurons are
   stable, so few binaries remain, and the box itself is just bounds on the variables x'.
3. Pruning. Per class k, r_k = the largest radius on a grid in [0, cap] at which the
   relaxation proves z_k < z_y: no input closer than r_k reaches k.
4. Proof, without bisection. For each class k that is not pruned (closest first), a MILP
   (scipy.optimize.milp, HiGHS) asks whether some x' in B(eps), eps = cap (1 - RTOL), has
   z_k >= z_y. "Infeasible" settles k at eps. A solution is a closer point: the region LP moves
   it to the boundary, cap shrinks to its distance, and the question is asked again. Once
   every class is settled, eps* lies in [cap (1 - RTOL), cap].
5. Witness. An LP over the best point's activation region with z_k - z_y >= slack *
   ||grad||_1 > 0 gives an input that the model, run in float64, really misclassifies (also
   after rounding to the images' dtype); `upper` is its measured distance.

`lower` is min over classes of the distance each is settled at (r_k for classes the time limit
left open), so lower <= eps* <= upper holds also when the search stops early.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import Bounds as VariableBounds
from scipy.optimize import LinearConstraint, OptimizeResult, milp
from torch import nn
from tqdm.auto import tqdm

from advlab.errors import InputError
from advlab.models.layers import Normalize, as_multiclass_logits
from advlab.models.linear import LogisticRegression, SoftmaxRegression
from advlab.validation import Bounds, check_bounds, check_images, check_labels, check_positive

STATUSES = ("optimal", "time_limit", "unverified", "misclassified", "unreachable")
OPTIMALITY_TOL = (1e-6, 1e-5)  # "optimal": upper - lower <= 1e-6 + 1e-5 * upper
RTOL = 1e-5  # a class is settled when no input within (1 - RTOL) * (best distance) reaches it
# HiGHS settings for the feasibility questions asked here: no presolve and no primal
# heuristics (they only cost time on these models), and tolerances tight enough that a
# "solution" a relative RTOL below the optimum is not an artefact of rounding. The objective
# cutoff set per problem (above every feasible objective, so it excludes no solution) skips
# the root heuristics HiGHS otherwise runs until it has an incumbent. No stop at the first
# solution ("mip_max_improving_sols": 1): combined with the cutoff, HiGHS then reports some
# feasible problems as infeasible, which made `lower` unsound (tests/exact/test_milp.py).
HIGHS_OPTIONS: dict[str, Any] = {
    "presolve": False,
    "mip_feasibility_tolerance": 1e-9,
    "primal_feasibility_tolerance": 1e-9,
    "mip_heuristic_effort": 0.0,
    "mip_heuristic_run_rins": False,
    "mip_heuristic_run_rens": False,
    "mip_heuristic_run_root_reduced_cost": False,
    "mip_heuristic_run_feasibility_jump": False,
}
RADIUS_GRID = 32  # radii tried per class when looking for relaxation-certified lower bounds
BOUND_SLACK = 1e-9  # relative widening of computed bounds, against float64 rounding


@dataclass
class MILPResult:
    """Per example: proven lower <= eps* <= upper (the verified witness's L-inf distance).

    status: "optimal" (upper meets lower within OPTIMALITY_TOL), "time_limit" (stopped by the
    time limit: the bounds hold, the gap may be open), "unverified" (lower is proven but no
    witness near it passed the float64 check), "misclassified" (the clean input is already
    wrong: eps* = 0) or "unreachable" (no input in the box changes the label: eps* = inf,
    witness = the input).
    target: the class the witness is given (-1 when there is none).
    """

    lower: torch.Tensor  # (N,) float64
    upper: torch.Tensor  # (N,) float64
    witness: torch.Tensor  # (N, ...) in the dtype of the images
    target: torch.Tensor  # (N,) int64
    labels: torch.Tensor  # (N,) int64
    status: list[str]
    seconds: torch.Tensor  # (N,) float64: bounds, MILPs and repair, plus a share of the attack
    time_limit: float

    @property
    def proven(self) -> torch.Tensor:
        """Examples whose eps* is known: optimal, misclassified or unreachable."""
        return torch.tensor([s in ("optimal", "misclassified", "unreachable") for s in self.status])

    def summary(self) -> dict[str, Any]:
        """Counts, time per example, and the median eps* and mean gap over optimal examples."""
        optimal = torch.tensor([s == "optimal" for s in self.status])
        seconds = self.seconds.numpy()
        return {
            "n": len(self.status),
            "proven": float(self.proven.double().mean()),
            "status_counts": {s: self.status.count(s) for s in STATUSES if s in self.status},
            "median_seconds": float(np.median(seconds)),
            "max_seconds": float(seconds.max()),
            "median_eps": float(self.upper[optimal].median()) if bool(optimal.any()) else math.nan,
            "mean_gap": float((self.upper - self.lower)[optimal].mean()) if bool(optimal.any()) else math.nan,
            "time_limit": self.time_limit,
        }


# ---- the network as float64 affine maps with ReLUs in between ---------------------------------
@dataclass(frozen=True)
class ReluNetwork:
    """z_1 = W_1 x + b_1,  z_i = W_i relu(z_{i-1}) + b_i;  the logits are z_L."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]

    def pre_activations(self, x: np.ndarray) -> list[np.ndarray]:
        """[z_1, ..., z_L] for a batch x of shape (N, n)."""
        zs = [x @ self.weights[0].T + self.biases[0]]
        for w, b in zip(self.weights[1:], self.biases[1:]):
            zs.append(np.maximum(zs[-1], 0.0) @ w.T + b)
        return zs

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.pre_activations(x)[-1]


def _leaves(module: nn.Module) -> list[nn.Module]:
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in _leaves(child)]
    if isinstance(module, (LogisticRegression, SoftmaxRegression)):
        return [nn.Flatten(), module.linear]
    return [module]


def relu_network(model: nn.Module, input_shape: tuple[int, ...]) -> ReluNetwork:
    """Read a Sequential stack of [Normalize], [Flatten], Linear and ReLU layers as a ReluNetwork.

    Consecutive affine maps are composed (a leading Normalize folds into the first Linear);
    a single-logit output z becomes the logits [0, z]. Anything else is an InputError.
    """
    n = math.prod(input_shape)
    ops: list[tuple[np.ndarray, np.ndarray] | None] = []  # (W, b) or None for a ReLU
    flat = len(input_shape) == 1
    for layer in _leaves(model):
        if isinstance(layer, (nn.Identity, nn.Dropout)):
            continue
        if isinstance(layer, Normalize):
            if ops:
                raise InputError("the exact MILP supports Normalize only as the first layer")
            with torch.no_grad():
                shift = layer(torch.zeros(1, *input_shape, dtype=torch.float64)).flatten().numpy()
                scale = layer(torch.ones(1, *input_shape, dtype=torch.float64)).flatten().numpy() - shift
            ops.append((np.diag(scale), shift))
        elif isinstance(layer, nn.Flatten):
            if (layer.start_dim, layer.end_dim) != (1, -1):
                raise InputError("the exact MILP supports only nn.Flatten(start_dim=1, end_dim=-1)")
            flat = True
        elif isinstance(layer, nn.Linear):
            if not flat:
                raise InputError(f"nn.Linear applied to inputs of shape {input_shape} without a Flatten first")
            bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
            ops.append((layer.weight.detach().cpu().double().numpy(), bias.detach().cpu().double().numpy()))
        elif isinstance(layer, nn.ReLU):
            ops.append(None)
        else:
            raise InputError(
                f"the exact MILP supports only Linear/ReLU networks (with Flatten and a leading Normalize); "
                f"got a {type(layer).__name__} layer"
            )
    identity = (np.eye(n), np.zeros(n))
    weights: list[np.ndarray] = []
    biases: list[np.ndarray] = []
    pending: tuple[np.ndarray, np.ndarray] | None = identity
    for op in ops:
        if op is None:
            if pending is not None:  # a ReLU right after another ReLU changes nothing
                weights.append(pending[0])
                biases.append(pending[1])
                pending = None
        else:
            w, b = op
            if pending is not None:
                w, b = w @ pending[0], w @ pending[1] + b
            pending = (w, b)
    if pending is None:
        pending = (np.eye(weights[-1].shape[0]), np.zeros(weights[-1].shape[0]))
    if pending[0].shape[0] == 1:  # one logit z -> [0, z], as as_multiclass_logits reads it
        pending = (np.vstack([np.zeros_like(pending[0]), pending[0]]), np.concatenate([[0.0], pending[1]]))
    weights.append(pending[0])
    biases.append(pending[1])
    return ReluNetwork(weights, biases)


# ---- bounds on pre-activations over a box ----------------------------------------------------
def _relaxation(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear bounds sl*z <= relu(z) <= su*z + tu for l <= z <= u (adaptive lower slope, CROWN)."""
    unstable = (lower < 0) & (upper > 0)
    width = np.where(unstable, upper - lower, 1.0)
    su = np.where(unstable, upper / width, (lower >= 0).astype(float))
    tu = np.where(unstable, -lower * upper / width, 0.0)
    sl = np.where(unstable, (upper >= -lower).astype(float), (lower >= 0).astype(float))
    return sl, su, tu


def _linear_bounds(
    net: ReluNetwork, hidden: list[tuple[np.ndarray, np.ndarray]], layer: int, rows: np.ndarray,
    xl: np.ndarray, xu: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of rows @ z_layer (layer 0-based) over the box, by back-substituting relaxations."""
    relax = [_relaxation(lo, up) for lo, up in hidden[:layer]]
    result = []
    for sign in (-1.0, 1.0):  # lower bound = -(upper bound of -rows)
        lam = sign * rows @ net.weights[layer]
        const = sign * rows @ net.biases[layer]
        for i in range(layer - 1, -1, -1):
            sl, su, tu = relax[i]
            pos, neg = np.maximum(lam, 0.0), np.minimum(lam, 0.0)
            const = const + pos @ tu
            lam = pos * su + neg * sl
            const = const + lam @ net.biases[i]
            lam = lam @ net.weights[i]
        result.append(sign * (const + np.maximum(lam, 0.0) @ xu + np.minimum(lam, 0.0) @ xl))
    lower, upper = result
    slack = BOUND_SLACK * (1.0 + np.abs(lower) + np.abs(upper))
    return lower - slack, upper + slack


def hidden_bounds(net: ReluNetwork, xl: np.ndarray, xu: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Bounds (l_i, u_i) of every hidden pre-activation over the box [xl, xu]: the tighter of the
    backward linear relaxation and interval arithmetic, layer by layer."""
    hidden: list[tuple[np.ndarray, np.ndarray]] = []
    al, au = xl, xu
    for i in range(len(net.weights) - 1):
        w, b = net.weights[i], net.biases[i]
        ia_lower = np.maximum(w, 0.0) @ al + np.minimum(w, 0.0) @ au + b
        ia_upper = np.maximum(w, 0.0) @ au + np.minimum(w, 0.0) @ al + b
        lower, upper = _linear_bounds(net, hidden, i, np.eye(w.shape[0]), xl, xu)
        lower, upper = np.maximum(lower, ia_lower), np.minimum(upper, ia_upper)
        hidden.append((lower, upper))
        al, au = np.maximum(lower, 0.0), np.maximum(upper, 0.0)
    return hidden


def _margin_rows(net: ReluNetwork, label: int) -> np.ndarray:
    """Rows e_k - e_y over the logits, one per class (the row of class y is zero)."""
    rows = np.eye(net.weights[-1].shape[0])
    rows[:, label] -= 1.0
    return rows


def _box(x: np.ndarray, radius: float, bounds: Bounds) -> tuple[np.ndarray, np.ndarray]:
    return np.maximum(x - radius, bounds[0]), np.minimum(x + radius, bounds[1])


def certified_radii(net: ReluNetwork, x: np.ndarray, label: int, cap: float, bounds: Bounds) -> np.ndarray:
    """Per class k, the largest radius r on a grid in [0, cap] at which the relaxation proves
    z_k < z_y on the whole box: no input closer than r reaches class k (inf for k = y)."""
    rows = _margin_rows(net, label)
    radii = np.zeros(rows.shape[0])
    for radius in cap * np.arange(1, RADIUS_GRID + 1) / RADIUS_GRID:
        xl, xu = _box(x, radius, bounds)
        _, upper = _linear_bounds(net, hidden_bounds(net, xl, xu), len(net.weights) - 1, rows, xl, xu)
        radii = np.where(upper < 0, radius, radii)
    radii[label] = math.inf
    return radii


# ---- the MILP for one target class ----------------------------------------------------------
class _Triplets:
    """Constraint rows lower <= A v <= upper, collected as sparse (row, column, value) triplets."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.lower: list[np.ndarray] = []
        self.upper: list[np.ndarray] = []
        self.count = 0

    def add(self, blocks: list[tuple[Any, Any]], lower: Any, upper: Any) -> None:
        """Rows whose terms are blocks of (columns, coefficients), both broadcast to (rows, terms)."""
        sizes = [(np.shape(v)[0],) for block in blocks for v in block if np.ndim(v) == 2]
        (r,) = np.broadcast_shapes(*sizes, np.shape(np.ravel(lower)), np.shape(np.ravel(upper)))
        lower, upper = np.broadcast_to(np.ravel(lower), (r,)), np.broadcast_to(np.ravel(upper), (r,))
        rows = np.arange(self.count, self.count + r)[:, None]
        for columns, coefficients in blocks:
            shape = np.broadcast_shapes(np.shape(columns), np.shape(coefficients), rows.shape)
            self.rows.append(np.broadcast_to(rows, shape).ravel())
            self.cols.append(np.broadcast_to(columns, shape).ravel())
            self.vals.append(np.broadcast_to(coefficients, shape).ravel())
        self.lower.append(lower)
        self.upper.append(upper)
        self.count += r

    def constraint(self, num_columns: int) -> LinearConstraint:
        matrix = sp.csr_array(
            (np.concatenate(self.vals), (np.concatenate(self.rows), np.concatenate(self.cols))),
            shape=(self.count, num_columns),
        )
        return LinearConstraint(matrix, np.concatenate(self.lower), np.concatenate(self.upper))


def _reach(
    net: ReluNetwork, hidden: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray, label: int, target: int,
    eps: float, bounds: Bounds, time_limit: float,
) -> OptimizeResult:
    """Is there an x' with |x' - x|_inf <= eps in the box and z_target(x') >= z_label(x')?

    The MILP of Tjeng et al. (Sec. 4.1) with the eps-box as variable bounds. It maximises the
    margin z_target - z_label (status 2: there is no such x'; any solution found is one).
    Variables: x' (n), then per hidden layer the activations of its non-dead neurons and one
    binary per unstable neuron.
    """
    n = x.size
    xl, xu = _box(x, eps, bounds)
    lower: list[Any] = [xl]
    upper: list[Any] = [xu]
    integrality = [np.zeros(n)]
    cons = _Triplets()
    prev_cols, prev_keep = np.arange(n)[None, :], np.ones(n, dtype=bool)
    next_col = n
    for (w, b), (lo, up) in zip(zip(net.weights[:-1], net.biases[:-1]), hidden):
        w = w[:, prev_keep]
        active, unstable = lo >= 0, (lo < 0) & (up > 0)
        keep = active | unstable
        a_cols = np.full(len(lo), -1)
        a_cols[keep] = next_col + np.arange(keep.sum())
        next_col += int(keep.sum())
        d_cols = np.full(len(lo), -1)
        d_cols[unstable] = next_col + np.arange(unstable.sum())
        next_col += int(unstable.sum())
        lower += [np.maximum(lo[keep], 0.0), np.zeros(unstable.sum())]
        upper += [np.maximum(up[keep], 0.0), np.ones(unstable.sum())]
        integrality += [np.zeros(keep.sum()), np.ones(unstable.sum())]
        a, d, l, u = (v[unstable][:, None] for v in (a_cols, d_cols, lo, up))
        minus_w = [(prev_cols, -w[unstable])]  # a - W a_prev = a - z + b
        cons.add([(a_cols[active][:, None], 1.0), (prev_cols, -w[active])], b[active], b[active])  # a = z
        cons.add([(a, 1.0), *minus_w], b[unstable], np.inf)  # a >= z
        cons.add([(a, 1.0), *minus_w, (d, -l)], -np.inf, b[unstable] - lo[unstable])  # a <= z - l (1 - d)
        cons.add([(a, 1.0), (d, -u)], -np.inf, 0.0)  # a <= u d
        prev_cols, prev_keep = a_cols[keep][None, :], keep
    row = (net.weights[-1][target] - net.weights[-1][label])[prev_keep]
    offset = net.biases[-1][target] - net.biases[-1][label]
    cons.add([(prev_cols, row[None, :])], -offset, np.inf)  # z_target - z_label >= 0
    cost = np.zeros(next_col)
    cost[prev_cols.ravel()] = -row
    return _highs(
        cost, np.concatenate(integrality), np.concatenate(lower), np.concatenate(upper), cons.constraint(next_col),
        {
            **HIGHS_OPTIONS,
            "time_limit": max(time_limit, 1e-3),
            "objective_bound": offset + 1e-6 * (1.0 + abs(offset)),  # objective = offset - margin
        },
    )


def _highs(
    cost: np.ndarray, integrality: np.ndarray, lower: np.ndarray, upper: np.ndarray,
    constraint: LinearConstraint, options: dict[str, Any],
) -> OptimizeResult:
    with warnings.catch_warnings():  # scipy warns that it passes HiGHS's own options on verbatim
        warnings.simplefilter("ignore", RuntimeWarning)
        return milp(
            cost, integrality=integrality, bounds=VariableBounds(lower, upper), constraints=constraint, options=options
        )


# ---- a float64 witness from a MILP optimum -------------------------------------------------
def _region_witness(
    net: ReluNetwork, x: np.ndarray, label: int, target: int, point: np.ndarray, slack: float, bounds: Bounds
) -> np.ndarray | None:
    """The L-inf-closest input to x in the activation region of `point` on which
    z_target - z_label >= slack * ||g||_1, g its gradient there: an LP, since the network is
    affine on the region. The margin survives any change of the input by less than `slack`
    (such as rounding to float32) that stays in the region. None when the LP fails."""
    n = x.size
    pattern = [z[0] > 0 for z in net.pre_activations(point[None])[:-1]]
    cons = _Triplets()
    pixels = np.arange(n)[:, None]
    cons.add([(pixels, 1.0), (n, -1.0)], -np.inf, x[:, None])
    cons.add([(pixels, 1.0), (n, 1.0)], x[:, None], np.inf)
    inputs = np.arange(n)[None, :]
    lin, const = np.eye(n), np.zeros(n)  # the current layer's input as lin @ x' + const
    for (w, b), on in zip(zip(net.weights[:-1], net.biases[:-1]), pattern):
        z_lin, z_const = w @ lin, w @ const + b
        cons.add([(inputs, z_lin)], np.where(on, -z_const, -np.inf), np.where(on, np.inf, -z_const))
        lin, const = z_lin * on[:, None], z_const * on
    row = (net.weights[-1][target] - net.weights[-1][label]) @ lin
    offset = (net.weights[-1][target] - net.weights[-1][label]) @ const + net.biases[-1][target] - net.biases[-1][label]
    cons.add([(inputs, row[None, :])], slack * np.abs(row).sum() - offset, np.inf)
    cost = np.zeros(n + 1)
    cost[n] = 1.0
    res = _highs(
        cost, np.zeros(n + 1), np.append(np.full(n, bounds[0]), 0.0), np.append(np.full(n, bounds[1]), np.inf),
        cons.constraint(n + 1), {"primal_feasibility_tolerance": 1e-9},
    )
    return None if res.x is None else np.clip(res.x[:n], bounds[0], bounds[1])


def _pgd(
    model64: nn.Module, x: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, eps: torch.Tensor,
    bounds: Bounds, steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed-gradient descent on z_label - z_target inside the eps-ball and the box, from x
    (Madry et al. 2018); per row the first iterate with z_target > z_label, and whether any."""
    radius = eps.view(-1, *[1] * (x.ndim - 1))
    step = 2.5 * radius / steps
    adv, found, first = x.clone(), torch.zeros_like(labels, dtype=torch.bool), x.clone()
    for _ in range(steps + 1):
        adv.requires_grad_(True)
        with torch.enable_grad():
            logits = as_multiclass_logits(model64(adv))
            margin = logits.gather(1, labels[:, None]) - logits.gather(1, targets[:, None])
            (grad,) = torch.autograd.grad(margin.sum(), adv)
        hit = (margin.detach().squeeze(1) < 0) & ~found
        first = torch.where(hit.view_as(radius), adv.detach(), first)
        found |= hit
        adv = (x + (adv.detach() - step * grad.sign() - x).clamp(-radius, radius)).clamp(*bounds)
    return first, found


def _bisect(
    model64: nn.Module, x: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, bounds: Bounds,
    rounds: int, steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bisection over eps of the targeted PGD: per row the closest point found with
    z_target > z_label and its L-inf distance (inf where none is found)."""
    best, best_eps = x.clone(), torch.full_like(labels, math.inf, dtype=x.dtype)
    eps_low, eps_high = torch.zeros_like(best_eps), torch.full_like(best_eps, bounds[1] - bounds[0])
    for _ in range(rounds):
        eps = torch.where(best_eps.isinf(), eps_high, 0.5 * (eps_low + eps_high))
        adv, found = _pgd(model64, x, labels, targets, eps, bounds, steps)
        linf = (adv - x).flatten(1).abs().amax(1)
        better = found & (linf < best_eps)
        best = torch.where(better.view(-1, *[1] * (x.ndim - 1)), adv, best)
        best_eps = torch.where(better, linf, best_eps)
        eps_high = torch.where(found, torch.minimum(eps_high, linf), eps_high)
        eps_low = torch.where(found, eps_low, eps)
    return best, best_eps


def attack_upper_bounds(
    model64: nn.Module, x: torch.Tensor, labels: torch.Tensor, num_classes: int, bounds: Bounds,
    *, rounds: int = 12, steps: int = 30, chunk: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example and class k != y, the smallest distance at which a bisection over eps of a
    targeted PGD attack finds z_k > z_y ((N, C), inf where it finds none and for k = y), and
    per example the point reaching the closest class ((N, ...))."""
    points, distances = [], []
    for start in range(0, len(x), chunk):
        images, goals = x[start : start + chunk], labels[start : start + chunk]
        rows = torch.arange(len(images)).repeat_interleave(num_classes)
        targets = torch.arange(num_classes).repeat(len(images))
        keep = targets != goals[rows]
        rows, targets = rows[keep], targets[keep]
        found, eps = _bisect(model64, images[rows], goals[rows], targets, bounds, rounds, steps)
        table = torch.full((len(images), num_classes), math.inf, dtype=x.dtype)
        table[rows, targets] = eps
        closest = table.argmin(1)
        position = torch.full((len(images), num_classes), -1, dtype=torch.long)
        position[rows, targets] = torch.arange(len(rows))
        chosen = position[torch.arange(len(images)), closest]
        points.append(torch.where((chosen >= 0).view(-1, *[1] * (x.ndim - 1)), found[chosen.clamp_min(0)], images))
        distances.append(table)
    return torch.cat(points), torch.cat(distances)


# ---- the driver -------------------------------------------------------------------------------
@dataclass
class _Example:
    lower: float
    upper: float
    witness: np.ndarray
    target: int
    status: str


class _Verifier:
    """Casts candidate witnesses to the images' dtype and keeps those the float64 model
    misclassifies, with their L-inf distance measured in float64."""

    def __init__(self, model64: nn.Module, dtype: torch.dtype, shape: tuple[int, ...], bounds: Bounds) -> None:
        self.model64, self.dtype, self.shape, self.bounds = model64, dtype, shape, bounds

    def __call__(self, x: np.ndarray, label: int, point: np.ndarray) -> tuple[float, np.ndarray, int] | None:
        cast = torch.from_numpy(point).to(self.dtype).double()
        with torch.no_grad():
            logits = as_multiclass_logits(self.model64(cast.reshape(1, *self.shape)))
        pred = int(logits.argmax(1))
        inside = bool(((cast >= self.bounds[0]) & (cast <= self.bounds[1])).all())
        if pred == label or not inside:
            return None
        return float((cast - torch.from_numpy(x)).abs().max()), cast.numpy(), pred


def _linf(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


def _solve_example(
    net: ReluNetwork, x: np.ndarray, label: int, attack_witness: np.ndarray, attack_eps: np.ndarray,
    bounds: Bounds, time_limit: float, verify: _Verifier,
) -> _Example:
    """Search and proof for one input (see the module docstring)."""
    deadline = time.perf_counter() + time_limit
    width = bounds[1] - bounds[0]
    candidates = []  # verified witnesses: (distance, point, class)
    best: tuple[float, np.ndarray, int] | None = None  # closest point found with z_k >= z_y
    if np.isfinite(attack_eps).any() and (checked := verify(x, label, attack_witness)) is not None:
        candidates.append(checked)
        best = checked
        closer = _region_witness(net, x, label, checked[2], checked[1], 0.0, bounds)
        if closer is not None and _linf(closer, x) < best[0]:
            best = (_linf(closer, x), closer, checked[2])
    cap = best[0] if best is not None else width
    radii = certified_radii(net, x, label, cap, bounds)
    settled_at = radii.copy()  # per class k: no input closer than this reaches k
    settled = radii >= cap
    order = np.lexsort((radii, attack_eps))  # classes the attack reached closest first
    rows = _margin_rows(net, label)
    box_eps, hidden = math.nan, []
    for k in order:
        while not settled[k] and time.perf_counter() < deadline:
            eps = cap if best is None else cap * (1.0 - RTOL)
            if radii[k] >= eps:
                settled[k] = True
                break
            xl, xu = _box(x, eps, bounds)
            if box_eps != eps:
                box_eps, hidden = eps, hidden_bounds(net, xl, xu)
            if (
                _linear_bounds(net, hidden, len(net.weights) - 1, rows[[k]], xl, xu)[1][0] < 0
                or (res := _reach(net, hidden, x, label, k, eps, bounds, deadline - time.perf_counter())).status == 2
            ):
                settled_at[k], settled[k] = eps, True
                break
            if res.x is None:  # out of time
                break
            found = res.x[: x.size]
            closer = _region_witness(net, x, label, k, found, 0.0, bounds)
            point = closer if closer is not None and _linf(closer, x) < _linf(found, x) else found
            best = (min(_linf(point, x), eps), point, int(k))
            cap = best[0]
    proven = bool(settled.all())
    if best is not None and not any(c[1] is best[1] for c in candidates):
        for slack in (1e-7, 1e-6, 1e-5):
            repaired = _region_witness(net, x, label, best[2], best[1], slack, bounds)
            if repaired is not None and (checked := verify(x, label, repaired)) is not None:
                candidates.append(checked)
                break
    lower = float(settled_at.min())
    if proven and best is None:
        return _Example(math.inf, math.inf, x, -1, "unreachable")
    upper, witness, target = min(candidates, key=lambda c: c[0], default=(math.inf, x, -1))
    lower = min(lower, upper)
    if not proven:
        status = "time_limit"
    elif upper - lower <= OPTIMALITY_TOL[0] + OPTIMALITY_TOL[1] * upper:
        status = "optimal"
    else:
        status = "unverified"
    return _Example(lower, upper, witness, target, status)


def minimal_linf(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    time_limit: float = 60.0,
    bounds: Bounds = (0.0, 1.0),
    progress: bool = False,
) -> MILPResult:
    """Exact minimal L-inf distance to another class for each image, under `time_limit`
    seconds per image (math.inf for none). The model must be a ReLU network (see relu_network)."""
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    time_limit = math.inf if time_limit == math.inf else check_positive("time_limit", time_limit)
    bounds = check_bounds(bounds)
    images = check_images("images", images, bounds)
    x64 = images.detach().cpu().double()
    labels = check_labels("labels", labels, len(images)).detach().cpu()
    model64 = copy.deepcopy(model).cpu().double().eval().requires_grad_(False)
    net = relu_network(model64, tuple(images.shape[1:]))
    flat = x64.flatten(1).numpy()
    with torch.no_grad():
        logits = as_multiclass_logits(model64(x64))
    if bool(((labels < 0) | (labels >= logits.shape[1])).any()):
        raise InputError(f"labels must lie in 0..{logits.shape[1] - 1}")
    mine = net.logits(flat)
    if mine.shape != logits.shape or not np.allclose(mine, logits.numpy(), rtol=1e-7, atol=1e-7):
        raise InputError("the model's forward pass is not the sequence of its layers; the MILP cannot read it")

    start = time.perf_counter()
    adv, adv_eps = attack_upper_bounds(model64, x64, labels, logits.shape[1], bounds)
    attack_share = (time.perf_counter() - start) / len(images)
    verify = _Verifier(model64, images.dtype, tuple(images.shape[1:]), bounds)
    clean_pred = logits.argmax(1)
    results, seconds = [], []
    for i in tqdm(range(len(images)), desc="milp", unit="image", disable=not progress, leave=False):
        began = time.perf_counter()
        label = int(labels[i])
        if int(clean_pred[i]) != label:
            results.append(_Example(0.0, 0.0, flat[i], int(clean_pred[i]), "misclassified"))
        else:
            results.append(
                _solve_example(
                    net, flat[i], label, adv[i].flatten().numpy(), adv_eps[i].numpy(), bounds, time_limit, verify
                )
            )
        seconds.append(time.perf_counter() - began + attack_share)
    witness = torch.from_numpy(np.stack([r.witness for r in results])).reshape(images.shape)
    return MILPResult(
        lower=torch.tensor([r.lower for r in results], dtype=torch.float64),
        upper=torch.tensor([r.upper for r in results], dtype=torch.float64),
        witness=witness.to(images.dtype).to(images.device),
        target=torch.tensor([r.target for r in results], dtype=torch.int64),
        labels=labels,
        status=[r.status for r in results],
        seconds=torch.tensor(seconds, dtype=torch.float64),
        time_limit=time_limit,
    )
