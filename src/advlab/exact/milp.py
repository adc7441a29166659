"""Exact answers for ReLU networks by mixed-integer programming (Tjeng, Xiao & Tedrake 2019).

Two questions, per input x of class y (`advlab.exact.encoding` holds the MILP itself):

- The minimal L-inf adversarial distance (`minimal_linf`):
      eps* = min ||x' - x||_inf  over x' in [lo, hi]^n with z_k(x') >= z_y(x') for some k != y.
  1. Upper bound: advlab's MinPGD attack (bisection over eps of margin PGD), run in float64;
     its point, moved to the decision boundary by an LP over its activation region (where the
     network is affine), gives the best distance `cap`.
  2. Pruning: per class k, r_k = the largest radius on a grid in [0, cap] at which CROWN proves
     z_k < z_y (`bounds.certified_radii`): no input closer than r_k reaches k.
  3. Proof, without bisection: for each class k not pruned (the attack's class first), the MILP
     asks whether some x' in B(eps), eps = cap (1 - RTOL), has z_k >= z_y. "Infeasible" settles
     k at eps; a solution is a closer point: the region LP moves it to the boundary, cap
     shrinks to its distance, and the question is asked again. Once every class is settled,
     eps* lies in [cap (1 - RTOL), cap].
  4. Witness: an LP over the best point's activation region with z_k - z_y >= slack ||grad||_1
     gives an input that the model, run in float64, really misclassifies (also after rounding
     to the images' dtype); `upper` is its measured distance.
  `lower` is the minimum over classes of the distance each is settled at (r_k for classes the
  time limit left open), so lower <= eps* <= upper holds also when the search stops early.

- The fixed-eps decision (`decide`): is there x' in B(eps) = {x' in box: ||x' - x||_inf <= eps}
  with another class winning? Classes that CROWN rules out on B(eps) are skipped; each other
  class gets one MILP (most threatening first): all infeasible = robust (proven); a solution,
  re-checked by the float64 model (repaired by the region LP inside B(eps) if rounding put it
  on the boundary), is a counterexample; the time limit gives "unknown".
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from advlab.attacks.witness import into_ball
from advlab.exact.bounds import box, certified_radii, hidden_bounds, margin_bounds
from advlab.exact.encoding import INFEASIBLE, NumpyNetwork, reach, region_witness, to_numpy
from advlab.exact.relu_network import ReluNetwork
from advlab.models.layers import as_multiclass_logits

RTOL = 1e-5  # a class is settled when no input within (1 - RTOL) * (best distance) reaches it
# "optimal": upper - lower <= 1e-6 + 2 RTOL * upper. lower = cap (1 - RTOL) by construction, and
# the float64 witness is pushed past the boundary by its repair slack, so a relative RTOL alone
# left some proven optima just outside (seed 563 of the property test in tests/exact/test_milp.py).
OPTIMALITY_TOL = (1e-6, 2 * RTOL)
REPAIR_SLACKS = (1e-7, 1e-6, 1e-5)


class Verifier:
    """Casts candidate points to the images' dtype and keeps those the float64 model
    misclassifies inside the bounds, with their L-inf distance measured in float64."""

    def __init__(self, model64: nn.Module, dtype: torch.dtype, shape: tuple[int, ...], bounds: tuple[float, float]):
        self.model64, self.dtype, self.shape, self.bounds = model64, dtype, shape, bounds

    def __call__(
        self, x: np.ndarray, label: int, point: np.ndarray, eps: float | None = None
    ) -> tuple[float, np.ndarray, int] | None:
        """(distance, point, class) or None; with `eps`, the point is first moved into B(eps)."""
        cast = torch.from_numpy(np.asarray(point, dtype=float)).to(self.dtype).double()
        if eps is not None:
            cast = into_ball(cast, torch.from_numpy(x), eps, self.bounds)
        with torch.no_grad():
            logits = as_multiclass_logits(self.model64(cast.reshape(1, *self.shape)))
        pred = int(logits.argmax(1))
        inside = bool(((cast >= self.bounds[0]) & (cast <= self.bounds[1])).all())
        if pred == label or not inside:
            return None
        return float((cast - torch.from_numpy(x)).abs().max()), cast.numpy(), pred


def _linf(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


def _hidden(net: ReluNetwork, x: np.ndarray, eps: float, bounds: tuple[float, float]) -> tuple:
    xl, xu = box(torch.from_numpy(x)[None], eps, bounds)
    return xl, xu, hidden_bounds(net, xl, xu)


# ---- the fixed-eps decision ---------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """status: "robust" (proven), "counterexample" (point: an input in B(eps) the float64 model
    misclassifies, as `target`) or "unknown" (time limit)."""

    status: str
    point: np.ndarray | None = None
    target: int = -1


def decide(
    net: ReluNetwork, solver_net: NumpyNetwork, x: np.ndarray, label: int, eps: float, bounds: tuple[float, float],
    time_limit: float, verify: Verifier,
) -> Decision:
    """Decide whether some input within L-inf distance eps of x (n,) in the box beats `label`."""
    deadline = time.perf_counter() + time_limit
    xl, xu, hidden = _hidden(net, x, eps, bounds)
    margins = margin_bounds(net, xl, xu, torch.tensor([label]))[0].numpy()  # lower bounds on z_y - z_k
    open_classes = [int(k) for k in np.argsort(margins) if margins[k] <= 0]
    hidden_np, lo, hi = to_numpy(hidden), xl[0].numpy(), xu[0].numpy()
    unknown = False
    for k in open_classes:
        for maximise in (False, True):  # any point first; the largest margin if it does not verify
            left = deadline - time.perf_counter()
            if left <= 0:
                return Decision("unknown")
            res = reach(solver_net, hidden_np, lo, hi, label, k, left, maximise=maximise)
            if res.status == INFEASIBLE:
                break
            if res.x is None:
                return Decision("unknown")
            checked = _confirm(solver_net, x, label, k, res.x[: x.size], (lo, hi), eps, verify)
            if checked is not None and checked[0] <= eps:
                return Decision("counterexample", checked[1], checked[2])
        else:
            unknown = True  # a tie on the decision boundary that no float64 point confirms
    return Decision("unknown" if unknown else "robust")


def _confirm(
    solver_net: NumpyNetwork, x: np.ndarray, label: int, k: int, point: np.ndarray, box_: tuple, eps: float,
    verify: Verifier,
) -> tuple[float, np.ndarray, int] | None:
    """The point if the float64 model misclassifies it, else one repaired by the region LP
    (a margin that survives rounding) inside the box, else None."""
    checked = verify(x, label, point, eps)
    for slack in REPAIR_SLACKS if checked is None else ():
        repaired = region_witness(solver_net, x, label, k, point, slack, box_)
        if repaired is not None and (checked := verify(x, label, repaired, eps)) is not None:
            break
    return checked


# ---- the minimal distance -----------------------------------------------------------------------
@dataclass
class Example:
    lower: float
    upper: float
    witness: np.ndarray
    target: int
    status: str


def minimal_example(
    net: ReluNetwork, solver_net: NumpyNetwork, x: np.ndarray, label: int, attack_point: np.ndarray | None,
    bounds: tuple[float, float], time_limit: float, verify: Verifier,
) -> Example:
    """Search and proof of the minimal L-inf distance for one input (module docstring)."""
    deadline = time.perf_counter() + time_limit
    candidates = []  # verified witnesses: (distance, point, class)
    best: tuple[float, np.ndarray, int] | None = None  # closest point found with z_k >= z_y
    if attack_point is not None and (checked := verify(x, label, attack_point)) is not None:
        candidates.append(checked)
        best = checked
        closer = region_witness(solver_net, x, label, checked[2], checked[1], 0.0, bounds)
        if closer is not None and _linf(closer, x) < best[0]:
            best = (_linf(closer, x), closer, checked[2])
    cap = best[0] if best is not None else bounds[1] - bounds[0]
    radii = certified_radii(net, torch.from_numpy(x), label, cap, bounds).numpy()
    settled_at = radii.copy()  # per class k: no input closer than this reaches k
    settled = radii >= cap
    first = -1 if best is None else best[2]
    order = sorted(range(len(radii)), key=lambda k: (k != first, radii[k]))
    box_eps, hidden = math.nan, None
    for k in order:
        while not settled[k] and time.perf_counter() < deadline:
            eps = cap if best is None else cap * (1.0 - RTOL)
            if radii[k] >= eps:
                settled[k] = True
                break
            if box_eps != eps:
                box_eps = eps
                xl, xu, hidden = _hidden(net, x, eps, bounds)
                margins = margin_bounds(net, xl, xu, torch.tensor([label]))[0].numpy()
                hidden_np, lo, hi = to_numpy(hidden), xl[0].numpy(), xu[0].numpy()
            if margins[k] > 0:
                settled_at[k], settled[k] = eps, True
                break
            res = reach(solver_net, hidden_np, lo, hi, label, int(k), deadline - time.perf_counter())
            if res.status == INFEASIBLE:
                settled_at[k], settled[k] = eps, True
                break
            if res.x is None:  # out of time
                break
            found = res.x[: x.size]
            closer = region_witness(solver_net, x, label, int(k), found, 0.0, bounds)
            point = closer if closer is not None and _linf(closer, x) < _linf(found, x) else found
            best = (min(_linf(point, x), eps), point, int(k))
            cap = best[0]
    proven = bool(settled.all())
    if best is not None and not any(c[1] is best[1] for c in candidates):
        for slack in REPAIR_SLACKS:
            repaired = region_witness(solver_net, x, label, best[2], best[1], slack, bounds)
            if repaired is not None and (checked := verify(x, label, repaired)) is not None:
                candidates.append(checked)
                break
    if proven and best is None:
        return Example(math.inf, math.inf, x, -1, "unreachable")
    upper, witness, target = min(candidates, key=lambda c: c[0], default=(math.inf, x, -1))
    lower = min(float(settled_at.min()), upper)
    if not proven:
        status = "time_limit"
    elif upper - lower <= OPTIMALITY_TOL[0] + OPTIMALITY_TOL[1] * upper:
        status = "optimal"
    else:
        status = "unverified"
    return Example(lower, upper, witness, target, status)
