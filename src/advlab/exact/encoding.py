"""The MILP and LP encodings of a ReluNetwork over an input box (HiGHS through scipy).

Mixed-integer encoding (Tjeng, Xiao & Tedrake 2019, "Evaluating robustness of neural networks
with mixed integer programming", Sec. 4.1), given bounds l <= z <= u on every input of a
non-linearity (from `advlab.exact.bounds`):

- ReLU a = max(z, 0): l >= 0 gives a = z; u <= 0 gives a = 0 (no variable); otherwise a binary d
  and  a >= z, a >= 0, a <= u d, a <= z - l (1 - d), which is exact.
- max-pool y = max_i z_i: if one input's lower bound is at least every other's upper bound,
  y = z_m; otherwise, over the inputs whose upper bound reaches max_i l_i (the others can never
  be the max), binaries d_i with sum d_i = 1 and  y >= z_i,  y <= z_i + (U - l_i)(1 - d_i),
  U = max_i u_i.

The input x' has the box as its variable bounds. `reach` maximises the margin z_k - z_y
subject to it being >= 0: "infeasible" proves that no input of the box reaches class k.
`region_witness` is the LP on the activation region of a point (every ReLU's sign and every
max-pool's arg-max fixed), where the network is affine.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import Bounds as VariableBounds
from scipy.optimize import LinearConstraint, OptimizeResult, milp

from advlab.exact.relu_network import MaxPool, ReluNetwork, Relu

# HiGHS settings for the feasibility questions asked here: no presolve and no primal
# heuristics (they only cost time on these models), and tolerances tight enough that a
# "solution" a relative 1e-5 below the optimum is not an artefact of rounding. The objective
# cutoff set per problem (above every feasible objective, so it excludes no solution) skips
# the root heuristics HiGHS otherwise runs until it has an incumbent. No stop at the first
# solution ("mip_max_improving_sols": 1): combined with the cutoff, HiGHS then reports some
# feasible problems as infeasible, which made minimal_linf's `lower` unsound
# (tests/exact/test_milp.py).
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
INFEASIBLE = 2  # scipy.optimize.milp status


@dataclass(frozen=True)
class NumpyNetwork:
    """A ReluNetwork's affine maps as numpy / scipy.sparse (CSR) matrices, for the solvers."""

    weights: list[Any]
    biases: list[np.ndarray]
    nonlinear: tuple
    size: int

    @staticmethod
    def of(net: ReluNetwork) -> NumpyNetwork:
        weights = []
        for a in net.affines:
            if a.sparse:
                w = a.weight.coalesce()
                index = w.indices().numpy()
                weights.append(sp.csr_array((w.values().numpy(), (index[0], index[1])), shape=tuple(w.shape)))
            else:
                weights.append(a.weight.numpy())
        size = int(np.prod(net.input_shape))
        return NumpyNetwork(weights, [a.bias.numpy() for a in net.affines], net.nonlinear, size)


class _Rows:
    """Constraint rows lower <= A v <= upper, collected as sparse (row, column, value) triplets.

    A term is (columns, coefficients): a matrix (r, k) (dense or sparse) with the k variable
    columns it multiplies, or a per-row coefficient (r,) / scalar with one column per row."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.lower: list[np.ndarray] = []
        self.upper: list[np.ndarray] = []
        self.count = 0

    def add(self, terms: list[tuple[Any, Any]], lower: Any, upper: Any, r: int) -> None:
        if r == 0:
            return
        for columns, coef in terms:
            if sp.issparse(coef) or np.ndim(coef) == 2:
                m = sp.coo_array(coef)
                self.rows.append(m.row + self.count)
                self.cols.append(np.asarray(columns)[m.col])
                self.vals.append(m.data)
            else:
                self.rows.append(np.arange(self.count, self.count + r))
                self.cols.append(np.broadcast_to(columns, (r,)))
                self.vals.append(np.broadcast_to(np.asarray(coef, dtype=float), (r,)))
        self.lower.append(np.broadcast_to(np.asarray(lower, dtype=float), (r,)))
        self.upper.append(np.broadcast_to(np.asarray(upper, dtype=float), (r,)))
        self.count += r

    def constraint(self, num_columns: int) -> LinearConstraint:
        matrix = sp.csr_array(
            (np.concatenate(self.vals), (np.concatenate(self.rows), np.concatenate(self.cols))),
            shape=(self.count, num_columns),
        )
        return LinearConstraint(matrix, np.concatenate(self.lower), np.concatenate(self.upper))


class _Variables:
    def __init__(self) -> None:
        self.lower: list[np.ndarray] = []
        self.upper: list[np.ndarray] = []
        self.integer: list[np.ndarray] = []
        self.count = 0

    def new(self, lower: np.ndarray, upper: np.ndarray, integer: bool = False) -> np.ndarray:
        lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
        self.lower.append(lower)
        self.upper.append(upper)
        self.integer.append(np.full(len(lower), float(integer)))
        cols = np.arange(self.count, self.count + len(lower))
        self.count += len(lower)
        return cols


def _rows_of(weight: Any, index: np.ndarray, keep: np.ndarray) -> Any:
    """weight[index][:, keep] for dense or CSR weights."""
    return weight[index][:, keep]


def encode(
    net: NumpyNetwork, hidden: list[tuple[np.ndarray, np.ndarray]], xl: np.ndarray, xu: np.ndarray,
    inactive: list[np.ndarray | None] | None = None,
) -> tuple[_Variables, _Rows, np.ndarray, np.ndarray]:
    """Variables and constraints whose feasible set projects exactly onto the network's graph
    over the box; returns them with the columns of the last hidden layer's kept units and the
    mask of those units (logits = W_L[:, keep] @ v[columns] + b_L). `inactive`: per layer the
    ReLU inputs constrained to z <= 0 (branch and bound's splits; bounds alone only drop them)."""
    var, rows = _Variables(), _Rows()
    cols = var.new(xl, xu)
    keep = np.ones(net.size, dtype=bool)
    inactive = inactive if inactive is not None else [None] * len(hidden)
    for w, b, g, (lo, up), off in zip(net.weights, net.biases, net.nonlinear, hidden, inactive):
        if isinstance(g, Relu):
            if off is not None and off.any():
                index = np.flatnonzero(off)
                rows.add([(cols, _rows_of(w, index, keep))], -np.inf, -b[index], len(index))  # z <= 0
            cols, keep = _relu(var, rows, w, b, lo, up, cols, keep)
        else:
            cols, keep = _max_pool(var, rows, w, b, g, lo, up, cols, keep)
    return var, rows, cols, keep


def _relu(var: _Variables, rows: _Rows, w: Any, b: np.ndarray, lo: np.ndarray, up: np.ndarray,
          cols: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    active, unstable = lo >= 0, (lo < 0) & (up > 0)
    new_keep = active | unstable
    a_all = np.full(len(lo), -1)
    a_all[new_keep] = var.new(np.maximum(lo[new_keep], 0.0), np.maximum(up[new_keep], 0.0))
    d = var.new(np.zeros(unstable.sum()), np.ones(unstable.sum()), integer=True)
    act, uns = np.flatnonzero(active), np.flatnonzero(unstable)
    rows.add([(a_all[act], 1.0), (cols, -_rows_of(w, act, keep))], b[act], b[act], len(act))  # a = z
    minus_w = (cols, -_rows_of(w, uns, keep))
    a, l, u = a_all[uns], lo[uns], up[uns]
    rows.add([(a, 1.0), minus_w], b[uns], np.inf, len(uns))  # a >= z
    rows.add([(a, 1.0), minus_w, (d, -l)], -np.inf, b[uns] - l, len(uns))  # a <= z - l (1 - d)
    rows.add([(a, 1.0), (d, -u)], -np.inf, 0.0, len(uns))  # a <= u d
    return a_all[new_keep], new_keep


def _max_pool(var: _Variables, rows: _Rows, w: Any, b: np.ndarray, g: MaxPool, lo: np.ndarray, up: np.ndarray,
              cols: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    groups = g.groups.numpy()
    pad = groups < 0
    index = np.maximum(groups, 0)
    gl, gu = np.where(pad, -np.inf, lo[index]), np.where(pad, -np.inf, up[index])
    best = gl.argmax(1)
    out = np.arange(len(groups))
    max_l, max_u = gl[out, best], gu.max(1)
    rest = np.where(np.arange(groups.shape[1]) == best[:, None], -np.inf, gu).max(1)
    dominated = max_l >= rest
    y = var.new(max_l, max_u)
    dom = np.flatnonzero(dominated)
    m = groups[dom, best[dom]]
    rows.add([(y[dom], 1.0), (cols, -_rows_of(w, m, keep))], b[m], b[m], len(dom))  # y = z_m
    o, k = np.nonzero(~pad & ~dominated[:, None] & (gu >= max_l[:, None]))  # candidate inputs
    member, slack = groups[o, k], max_u[o] - gl[o, k]
    d = var.new(np.zeros(len(o)), np.ones(len(o)), integer=True)
    minus_w = (cols, -_rows_of(w, member, keep))
    rows.add([(y[o], 1.0), minus_w], b[member], np.inf, len(o))  # y >= z_i
    rows.add([(y[o], 1.0), minus_w, (d, slack)], -np.inf, b[member] + slack, len(o))  # y <= z_i + s (1 - d_i)
    free = np.flatnonzero(~dominated)
    position = np.searchsorted(free, o)
    one_hot = sp.csr_array((np.ones(len(o)), (position, np.arange(len(o)))), shape=(len(free), len(o)))
    rows.add([(d, one_hot)], 1.0, 1.0, len(free))  # exactly one arg-max
    return y, np.ones(len(groups), dtype=bool)


def highs(cost: np.ndarray, var: _Variables, rows: _Rows, options: dict[str, Any]) -> OptimizeResult:
    with warnings.catch_warnings():  # scipy warns that it passes HiGHS's own options on verbatim
        warnings.simplefilter("ignore", RuntimeWarning)
        return milp(
            cost,
            integrality=np.concatenate(var.integer),
            bounds=VariableBounds(np.concatenate(var.lower), np.concatenate(var.upper)),
            constraints=rows.constraint(var.count),
            options=options,
        )


def reach(
    net: NumpyNetwork, hidden: list[tuple[np.ndarray, np.ndarray]], xl: np.ndarray, xu: np.ndarray,
    label: int, target: int, time_limit: float, *, maximise: bool = True,
) -> OptimizeResult:
    """Is there an x' in the box [xl, xu] with z_target(x') >= z_label(x')? The MILP maximises
    the margin z_target - z_label subject to it being >= 0 (`maximise=False`: any feasible point
    will do, and HiGHS stops at the first); status INFEASIBLE: no such x' (any solution found is
    one; its first `net.size` entries are x')."""
    var, rows, cols, keep = encode(net, hidden, xl, xu)
    w, b = net.weights[-1], net.biases[-1]
    row = np.asarray(_rows_of(w, np.array([target]), keep) - _rows_of(w, np.array([label]), keep))
    row = row.toarray() if sp.issparse(row) else row
    offset = b[target] - b[label]
    rows.add([(cols, row)], -offset, np.inf, 1)  # z_target - z_label >= 0
    cost = np.zeros(var.count)
    options = {**HIGHS_OPTIONS, "time_limit": max(time_limit, 1e-3)}
    if maximise:
        cost[cols] = -row[0]  # objective = offset - margin
        options["objective_bound"] = offset + 1e-6 * (1.0 + abs(offset))
    return highs(cost, var, rows, options)


def meets(
    net: NumpyNetwork, hidden: list[tuple[np.ndarray, np.ndarray]], xl: np.ndarray, xu: np.ndarray,
    rows_c: np.ndarray, offsets: np.ndarray, time_limit: float,
) -> OptimizeResult:
    """Is there an x' in the box [xl, xu] with C z(x') <= d (rows_c (R, C), offsets (R,))?
    status INFEASIBLE: no such x'; a solution's first `net.size` entries are one."""
    var, rows, cols, keep = encode(net, hidden, xl, xu)
    w, b = net.weights[-1], net.biases[-1]
    weight = _rows_of(w, np.arange(w.shape[0]), keep)
    weight = weight.toarray() if sp.issparse(weight) else np.asarray(weight)
    rows.add([(cols, rows_c @ weight)], -np.inf, offsets - rows_c @ b, len(rows_c))  # C (W v + b) <= d
    options = {**HIGHS_OPTIONS, "time_limit": max(time_limit, 1e-3)}
    return highs(np.zeros(var.count), var, rows, options)


def region_witness(
    net: NumpyNetwork, x: np.ndarray, label: int, target: int, point: np.ndarray, slack: float,
    bounds: tuple[np.ndarray, np.ndarray] | tuple[float, float],
) -> np.ndarray | None:
    """The L-inf-closest input to x, within `bounds` (numbers or per-coordinate arrays), in the
    activation region of `point` on which z_target - z_label >= slack * ||g||_1, g its gradient
    there: an LP, since the network is affine on the region. The margin survives any change of
    the input by less than `slack` (such as rounding to float32) that stays in the region. None
    when the LP fails."""
    n = x.size
    var, rows = _Variables(), _Rows()
    inputs = var.new(np.broadcast_to(bounds[0], (n,)), np.broadcast_to(bounds[1], (n,)))
    t = var.new(np.zeros(1), np.full(1, np.inf))
    rows.add([(inputs, 1.0), (t, -1.0)], -np.inf, x, n)  # x' - t <= x
    rows.add([(inputs, 1.0), (t, 1.0)], x, np.inf, n)  # x' + t >= x
    lin, const = np.eye(n), np.zeros(n)  # the current layer's value as lin @ x' + const
    value = point.astype(float)
    for w, b, g in zip(net.weights, net.biases, net.nonlinear):
        z_lin, z_const, value = w @ lin, w @ const + b, w @ value + b
        if isinstance(g, Relu):
            on = value > 0
            rows.add([(inputs, z_lin)], np.where(on, -z_const, -np.inf), np.where(on, np.inf, -z_const), len(on))
            lin, const, value = z_lin * on[:, None], z_const * on, value * on
        else:
            groups = g.groups.numpy()
            vals = np.where(groups < 0, -np.inf, value[np.maximum(groups, 0)])
            arg = groups[np.arange(len(groups)), vals.argmax(1)]
            o, k = np.nonzero(groups >= 0)
            other = groups[o, k]
            diff = z_lin[arg[o]] - z_lin[other]
            rows.add([(inputs, diff)], z_const[other] - z_const[arg[o]], np.inf, len(o))  # z_arg >= z_other
            lin, const, value = z_lin[arg], z_const[arg], value[arg]
    w, b = net.weights[-1], net.biases[-1]
    gap = np.asarray(w[[target]] - w[[label]])
    gap = gap.toarray()[0] if sp.issparse(gap) else gap[0]
    row = gap @ lin
    offset = gap @ const + b[target] - b[label]
    rows.add([(inputs, row[None, :])], slack * np.abs(row).sum() - offset, np.inf, 1)
    cost = np.zeros(var.count)
    cost[t] = 1.0
    res = highs(cost, var, rows, {"primal_feasibility_tolerance": 1e-9})
    return None if res.x is None else np.clip(res.x[:n], bounds[0], bounds[1])


def to_numpy(hidden: list[tuple[torch.Tensor, torch.Tensor]], i: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Row i of batched hidden bounds, as numpy arrays."""
    return [(lo[i].numpy(), up[i].numpy()) for lo, up in hidden]
