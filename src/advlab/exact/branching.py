"""Where branch and bound splits: each sub-domain's bounds under its splits, and the score of
every unstable ReLU (`advlab.exact.bab`).

`split_bounds`: the root's hidden bounds clamped by the splits s_j z_j >= 0, passed on through
identities so that a split ReLU feeding a max-pool tightens the pool's relaxation.
`branching_scores`: the BaBSR score (Bunel et al. 2020, "Branch and bound for piecewise linear
neural network verification", Sec. 5.1), the intercept a ReLU's upper relaxation adds to the
bound, plus `pool_gain` for a ReLU that sets an open max-pool window's constant upper bound.
`split_children_bounds`: filtered smart branching, the bounds both children of each of the
best-scored candidates would get, so that the split is chosen by what it does to the bound.
"""

from __future__ import annotations

import math

import torch

from advlab.exact.bounds import Interval
from advlab.exact.operators import MaxPool
from advlab.exact.optimized import back_substitute, clamp_splits
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


def split_children_bounds(
    net: ReluNetwork, base: list[Interval], signs: list[torch.Tensor | None], alphas: list[torch.Tensor | None],
    betas: list[torch.Tensor | None], rows: torch.Tensor, offsets: torch.Tensor, candidates: torch.Tensor,
    xl: torch.Tensor, xu: torch.Tensor,
) -> torch.Tensor:
    """Filtered smart branching (FSB; De Palma et al. 2021, "Improved branch and bound for neural
    network verification via Lagrangian decomposition", Sec. 5): the bound each split of a
    candidate would give, one back-substitution per child at the sub-domain's slopes and
    multipliers (the new split's multiplier 0), not optimised. base: per non-linearity the
    bounds of its input before the splits (D, W); signs (D, W) / alphas, betas (D, R, W) per
    layer (None where not split); rows (D, R, C), offsets (D, R); candidates (D, k) flat ReLU
    indices as in `branching_scores`. Returns the lower bound of max_r (C_r z - d_r) over each
    child (2, k, D): [0] the candidate split active (z >= 0), [1] inactive (z <= 0)."""
    d, k = candidates.shape
    copies = 2 * k * d
    rep = torch.arange(d).repeat(2 * k)
    flat = candidates.T.reshape(-1).repeat(2)  # copy order: sign-major, then candidate, then domain
    sign = torch.cat([torch.ones(k * d), -torch.ones(k * d)]).to(xl.dtype)
    child_signs: list[torch.Tensor | None] = []
    start = 0
    for s in signs:
        if s is None:
            child_signs.append(None)
            continue
        width = s.shape[1]
        s = s[rep].to(xl.dtype)
        here = ((flat >= start) & (flat < start + width)).nonzero().flatten()
        s[here, flat[here] - start] = sign[here]
        child_signs.append(s)
        start += width
    hidden = split_bounds(net, [(lo[rep], up[rep]) for lo, up in base], child_signs)
    with torch.no_grad():
        upper = back_substitute(net, hidden, len(net.nonlinear), -rows[rep], xl.expand(copies, -1), xu.expand(copies, -1),
                                [None if a is None else a[rep] for a in alphas],
                                [None if b is None else b[rep] for b in betas], child_signs).upper
    return (-upper - offsets[rep]).amax(1).reshape(2, k, d)
