"""Where branch and bound splits: each sub-domain's bounds under its splits, and the score of
every unstable ReLU (`advlab.exact.bab`).

`split_bounds`: the root's hidden bounds clamped by the splits s_j z_j >= 0, passed on through
identities so that a split ReLU feeding a max-pool tightens the pool's relaxation.
`branching_scores`: the BaBSR score (Bunel et al. 2020, "Branch and bound for piecewise linear
neural network verification", Sec. 5.1), the intercept a ReLU's upper relaxation adds to the
bound, plus `pool_gain` for a ReLU that sets an open max-pool window's constant upper bound.
"""

from __future__ import annotations

import math

import torch

from advlab.exact.bounds import Interval
from advlab.exact.operators import MaxPool
from advlab.exact.optimized import clamp_splits
from advlab.exact.relu_network import ReluNetwork, Relu


def split_bounds(net: ReluNetwork, hidden: list[Interval], signs: list[torch.Tensor | None]) -> list[Interval]:
    """The bounds of each non-linearity's input over sub-domains (D, W): `hidden` clamped by the
    splits (`clamp_splits`), and where the affine map between two non-linearities is the identity
    (a ReLU feeding a max-pool) intersected with the earlier one's interval image, so that a split
    ReLU tightens the bounds (and the relaxation) of the pool it feeds."""
    out = clamp_splits(hidden, signs)
    for j in range(1, len(out)):
        if not net.affines[j].ops:
            lo, up = net.nonlinear[j - 1].interval(*out[j - 1])
            out[j] = (torch.maximum(out[j][0], lo), torch.minimum(out[j][1], up))
    return out


def branching_scores(net: ReluNetwork, hidden: list[Interval], intercepts: list[torch.Tensor | None], d: int) -> torch.Tensor:
    """Per unstable ReLU how much splitting it could lower one of the rows' bounds, -1 for stable
    ones; the ReLU layers concatenated (D, sum W). The BaBSR score (Bunel et al. 2020, Sec. 5.1):
    the intercept its upper relaxation adds; for a ReLU feeding a max-pool through the identity
    also `pool_gain`, since there its positive coefficients go to the pool's constant upper bound
    (on the MNIST CNN nearly all of the gap is in the pools, and BaBSR alone scores those ReLUs 0)."""
    parts = []
    for i, (g, (lo, up), t) in enumerate(zip(net.nonlinear, hidden, intercepts)):
        if not isinstance(g, Relu):
            continue
        feeds_pool = i + 1 < len(net.nonlinear) and not net.affines[i + 1].ops and isinstance(net.nonlinear[i + 1], MaxPool)
        if feeds_pool:
            t = t + pool_gain(net.nonlinear[i + 1], hidden[i + 1], intercepts[i + 1])
        parts.append(torch.where((lo < 0) & (up > 0), t.amax(1), -1.0))
    return torch.cat(parts, 1) if parts else torch.zeros(d, 0, dtype=torch.float64)


def pool_gain(pool: MaxPool, bounds: Interval, constants: torch.Tensor) -> torch.Tensor:
    """Per pool input and row (D, R, W): for the input with the largest upper bound U of an open
    window, what the window's constant (`constants`, (D, R, out): lam+ U) drops by when that input
    is split inactive (its upper bound becomes 0, the constant the next largest, U2):
    lam+ (U - max(U2, 0)); 0 for every other input."""
    lower, upper = bounds
    index = pool.groups.clamp_min(0)
    gu = upper[..., index].masked_fill(pool.groups < 0, -math.inf)  # (D, out, k)
    top2 = gu.topk(min(2, gu.shape[-1]), dim=-1)
    first = top2.values[..., 0]
    second = top2.values[..., 1].clamp_min(0.0) if gu.shape[-1] > 1 else torch.zeros_like(first)
    share = torch.where(first > 0, (first - second) / first.clamp_min(1e-300), 0.0)
    top = index.expand(len(upper), -1, -1).gather(-1, top2.indices[..., :1]).squeeze(-1)  # (D, out)
    gain = torch.zeros(*constants.shape[:2], upper.shape[-1], dtype=constants.dtype)
    return gain.scatter_add_(-1, top.unsqueeze(1).expand(-1, constants.shape[1], -1), constants * share.unsqueeze(1))
