"""Sub-domains of branch and bound decided exactly (`advlab.exact.bab`, step 4).

`lp_leaf`: a ReLU network with every ReLU fixed is affine on the sub-domain, a polytope: one LP
(HiGHS) gives the exact minimum of max_r (C_r z - d_r). `milp_leaf`: with unstable ReLUs or
open max-pool windows left, the fixed-eps MILP of `advlab.exact.encoding` over the sub-domain.
Either returns True (proven), a counterexample confirmed by `check`, or None (a minimum too
close to 0 to trust, or the solver stopped at its time limit).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linprog

from advlab.exact.bounds import Interval
from advlab.exact.encoding import HIGHS_OPTIONS, INFEASIBLE, NumpyNetwork, encode, highs
from advlab.exact.relu_network import ReluNetwork

LP_MARGIN = 1e-6  # a leaf is proven only when its minimum margin exceeds this (solver tolerance)


def milp_leaf(
    solver: NumpyNetwork, clamped: list[Interval], xl: torch.Tensor, xu: torch.Tensor, goal: torch.Tensor,
    offset: torch.Tensor, signs: list[torch.Tensor | None], check: Callable[[torch.Tensor], torch.Tensor | None],
    time_limit: float,
) -> bool | torch.Tensor | None:
    """The exact minimum of max_r (C_r z - d_r) over a sub-domain (`clamped`: its bounds, the
    split ReLUs fixed, the inactive ones constrained to z <= 0) by the MILP of `advlab.exact.encoding` (binaries for its unstable ReLUs and
    open max-pool windows) with one more variable t >= C_r z - d_r: first feasibility with t <= 0
    (infeasible: proven), then, if the point found is not confirmed (a tie on the boundary), t
    minimised: True (proven), a confirmed counterexample, or None (too close to 0 to trust, or
    stopped at the time limit)."""
    inactive = [None if s is None else (s[0] < 0).numpy() for s in signs]
    var, rows, cols, keep = encode(solver, [(lo[0].numpy(), up[0].numpy()) for lo, up in clamped], xl[0].numpy(),
                                   xu[0].numpy(), inactive)
    w, b = solver.weights[-1], solver.biases[-1]
    weight = w[:, keep]
    weight = weight.toarray() if sp.issparse(weight) else np.asarray(weight)
    goal, offset = goal.numpy(), offset.numpy()
    deadline = time.perf_counter() + time_limit
    t = var.new(np.full(1, -np.inf), np.zeros(1))  # t <= 0: first any point meeting the goal
    rows.add([(cols, goal @ weight), (t, -1.0)], -np.inf, offset - goal @ b, len(goal))  # C (W v + b) - d <= t
    cost = np.zeros(var.count)
    res = highs(cost, var, rows, {**HIGHS_OPTIONS, "time_limit": max(time_limit, 1e-3)})
    if res.status == INFEASIBLE:
        return True
    if res.x is None:
        return None
    point = check(torch.from_numpy(res.x[: xl.shape[1]]))
    if point is not None:
        return point
    # a point on the boundary the float64 model does not confirm: the most violating one instead
    var.upper[-1] = np.full(1, np.inf)
    cost[t] = 1.0
    res = highs(cost, var, rows, {**HIGHS_OPTIONS, "time_limit": max(deadline - time.perf_counter(), 1e-3)})
    if res.x is None:
        return None
    if res.status == 0 and res.fun > LP_MARGIN:
        return True
    return check(torch.from_numpy(res.x[: xl.shape[1]]))


def lp_leaf(
    net: ReluNetwork, xl: torch.Tensor, xu: torch.Tensor, clamped: list[Interval], goal: torch.Tensor,
    offset: torch.Tensor, check: Callable[[torch.Tensor], torch.Tensor | None], deadline: float = math.inf,
) -> bool | torch.Tensor | None:
    """The exact minimum of max_r (C_r z - d_r) over a sub-domain of a ReLU network with every
    ReLU fixed (`clamped`: its bounds), by one LP: True (proven), a confirmed counterexample, or
    None (a minimum too close to 0 to trust, or the LP stopped at the deadline)."""
    n = xl.shape[1]
    m, c = torch.eye(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)  # z = m x + c
    a_ub, b_ub = [], []
    for affine, (lo, up) in zip(net.affines, clamped):
        m, c = affine.dense() @ m, affine(c)
        active = lo[0] >= 0
        # active: -(m x + c) <= 0; inactive: m x + c <= 0
        sign = torch.where(active, -1.0, 1.0).double()
        a_ub.append(sign.unsqueeze(1) * m)
        b_ub.append(-sign * c)
        m, c = m * active.unsqueeze(1), c * active
    last = net.affines[-1]
    m, c = last.dense() @ m, last(c)
    # minimise t subject to C_r z - d_r <= t for every row: variables (x, t)
    a_ub = [torch.cat([a, torch.zeros(len(a), 1, dtype=torch.float64)], 1) for a in a_ub]
    a_ub.append(torch.cat([goal @ m, -torch.ones(len(goal), 1, dtype=torch.float64)], 1))
    b_ub.append(offset - goal @ c)
    cost = torch.zeros(n + 1, dtype=torch.float64)
    cost[n] = 1.0
    box_bounds = np.concatenate([np.stack([xl[0].numpy(), xu[0].numpy()], 1), [[-np.inf, np.inf]]])
    res = linprog(cost.numpy(), A_ub=torch.cat(a_ub).numpy(), b_ub=torch.cat(b_ub).numpy(),
                  bounds=box_bounds, method="highs",
                  options={"time_limit": max(deadline - time.perf_counter(), 1e-3)} if deadline < math.inf else None)
    if res.status == 2:
        return True
    if res.status != 0:
        return None
    if res.fun > LP_MARGIN:
        return True
    point = check(torch.from_numpy(res.x[:n]))
    return point if point is not None else None
