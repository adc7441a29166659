"""Optimised linear bounds: alpha-CROWN slopes and beta-CROWN split multipliers.

CROWN (`advlab.exact.bounds`) relaxes an unstable ReLU (l < 0 < u) from below by
relu(z) >= a z with a fixed slope a in {0, 1}. Every a in [0, 1] gives a valid bound, so
alpha-CROWN (Xu et al. 2021, "Fast and complete: enabling complete neural network
verification with rapid and massively parallel incomplete verifiers", Sec. 3.1) treats the
slopes as free parameters, one set per bounded row, and maximises the bound over them by
projected gradient ascent (Adam, then clamp to [0, 1]); the bound is differentiable in them.

Branch and bound adds split constraints s_j z_j >= 0 (s_j = +1: the neuron is active,
-1: inactive) to a sub-domain. Over the sub-domain the split neuron's ReLU is linear (its bounds
are clamped at 0), and for any beta_j >= 0 (Wang et al. 2021, "Beta-CROWN: efficient bound
propagation with per-neuron split constraints", Sec. 3.2, Lagrangian relaxation)

    max_{x feasible} lam . z  <=  max_{x in box} lam . z + sum_j beta_j s_j z_j,

so the multipliers enter the back-substitution as + beta s on the coefficient of z_j and are
optimised with the slopes. Every iterate is a valid bound: the best one per row is kept.

A max-pool's upper bound is linear too: max_i z_i <= sum_i a_i (z_i - l_i) + max_j (u_j - a_j (u_j - l_j))
holds on the box for any slopes a in [0, 1]^k per window (`MaxPool.relaxation`), so its slopes
are free parameters as well, one set per row, started at CROWN's choice and optimised with the
ReLU slopes (the constant max_j u_j of DeepPoly is the case a = 0), and so are the weights of its
lower bound, any convex combination of the window's inputs (auto_LiRPA's optimised max-pool).

Conventions as in `bounds`: upper bounds of lam . z_depth, rows (B, R, width), float64, every
result widened by BOUND_SLACK; alphas[i] is (B, R, W_i) for a ReLU layer and (B, R, 2 out_i k_i)
for a max-pool (upper slopes, then lower weights, over each window's inputs, flat).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from advlab.exact.bounds import (
    BOUND_SLACK, Interval, hidden_bounds, intersect_at, neuron_rows, one_hot_rows, relaxation_needs, rival_rows, spec_lower,
)
from advlab.exact.relu_network import ReluNetwork, Relu

ALPHA_LR, BETA_LR, LR_DECAY = 0.1, 0.05, 0.98  # Adam settings of the alpha-beta-CROWN paper
HIDDEN_ELEMENTS = 1 << 22  # coefficient entries per hidden-bound optimisation (autograd keeps each pass)


def clamp_splits(hidden: list[Interval], signs: list[torch.Tensor | None]) -> list[Interval]:
    """The bounds of each z_i over a sub-domain: l >= 0 where split active, u <= 0 where inactive.
    signs: per layer (B, W) in {-1, 0, +1} (or None: no splits)."""
    out = []
    for (lo, up), s in zip(hidden, signs):
        if s is None:
            out.append((lo, up))
        else:
            out.append((torch.where(s > 0, lo.clamp_min(0.0), lo), torch.where(s < 0, up.clamp_max(0.0), up)))
    return out


@dataclass
class Pass:
    """One back-substitution: the bound (B, R), the input that attains it per row (B, R, n), and
    per ReLU layer the intercept each unstable neuron's upper relaxation adds (B, R, W)."""

    upper: torch.Tensor
    argmax: torch.Tensor
    intercepts: list[torch.Tensor | None]


def back_substitute(
    net: ReluNetwork, hidden: list[Interval], depth: int, lam: torch.Tensor, xl: torch.Tensor, xu: torch.Tensor,
    alphas: list[torch.Tensor | None], betas: list[torch.Tensor | None], signs: list[torch.Tensor | None],
) -> Pass:
    """Upper bound of lam . z_depth (lam (B, R, width_depth)) over the box and the splits, with
    ReLU lower slopes or max-pool upper slopes alphas[i] (None: CROWN's choice) and multipliers
    betas[i] >= 0 on the split constraints signs[i] (B, W_i); betas[i] is None exactly where
    signs[i] is (a layer without splits). `hidden` must already be clamped."""
    const = lam @ net.affines[depth].bias
    lam = net.affines[depth].back(lam)
    intercepts: list[torch.Tensor | None] = [None] * depth
    for i in range(depth - 1, -1, -1):  # lam is on h_{i+1} = g(z_i)
        relax = net.nonlinear[i].relaxation(*hidden[i], alphas[i])
        intercepts[i] = relax.intercepts(lam)
        lam, extra = relax.back(lam)
        const = const + extra
        if betas[i] is not None:
            lam = lam + betas[i] * signs[i].unsqueeze(1)
        const = const + lam @ net.affines[i].bias
        lam = net.affines[i].back(lam)
    upper = const + (lam.clamp_min(0.0) * xu.unsqueeze(1)).sum(-1) + (lam.clamp_max(0.0) * xl.unsqueeze(1)).sum(-1)
    argmax = torch.where(lam.detach() >= 0, xu.unsqueeze(1), xl.unsqueeze(1))
    return Pass(upper, argmax, intercepts)


@dataclass
class Optimised:
    """The best (smallest) upper bound per row (B, R), the slopes and multipliers that gave it,
    and the pass at the last iterate (for branching scores and candidate inputs)."""

    upper: torch.Tensor
    alphas: list[torch.Tensor | None]
    betas: list[torch.Tensor | None]
    last: Pass


def initial_alphas(net: ReluNetwork, hidden: list[Interval], depth: int, rows: int) -> list[torch.Tensor | None]:
    """CROWN's slopes, one copy per row: for a ReLU its adaptive lower slope (1 where u >= -l,
    else 0), (B, R, W_i); for a max-pool the upper slopes and lower weights over each window's
    inputs (`MaxPool.initial_slopes`), (B, R, 2 out_i k_i)."""
    out: list[torch.Tensor | None] = []
    for g, (lo, up) in zip(net.nonlinear[:depth], hidden[:depth]):
        start = (up >= -lo).to(lo.dtype) if isinstance(g, Relu) else g.initial_slopes(lo, up)
        out.append(start.unsqueeze(1).expand(-1, rows, -1).clone())
    return out


def optimise(
    net: ReluNetwork, hidden: list[Interval], depth: int, lam: torch.Tensor, xl: torch.Tensor, xu: torch.Tensor, *,
    steps: int, alphas: list[torch.Tensor | None] | None = None, betas: list[torch.Tensor | None] | None = None,
    signs: list[torch.Tensor | None] | None = None, stop_below: float | torch.Tensor | None = None,
    deadline: float = math.inf,
) -> Optimised:
    """Minimise the upper bound of lam . z_depth over the slopes (and multipliers where signs
    are given) by `steps` projected Adam steps; stop early once every row's bound is below
    `stop_below`, or when time.perf_counter() passes `deadline` (every iterate is a valid
    bound). Returns the best bound per row, widened against rounding."""
    signs = signs if signs is not None else [None] * depth
    alphas = initial_alphas(net, hidden, depth, lam.shape[1]) if alphas is None else [a if a is None else a.clone() for a in alphas]
    if betas is None:
        betas = [None if s is None else torch.zeros(s.shape[0], lam.shape[1], s.shape[1], dtype=lam.dtype) for s in signs]
    betas = [b if b is None else b.clone() for b in betas]
    params = [p for p in alphas + betas if p is not None]
    groups = [{"params": [a for a in alphas if a is not None], "lr": ALPHA_LR},
              {"params": [b for b in betas if b is not None], "lr": BETA_LR}]
    optimiser = torch.optim.Adam([g for g in groups if g["params"]]) if params and steps else None
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimiser, LR_DECAY) if optimiser else None
    best = torch.full(lam.shape[:2], torch.inf, dtype=lam.dtype)
    best_alphas = [a if a is None else a.detach().clone() for a in alphas]
    best_betas = [b if b is None else b.detach().clone() for b in betas]
    for step in range(steps + 1):
        for p in params:
            p.requires_grad_(optimiser is not None and step < steps)
        with torch.set_grad_enabled(optimiser is not None and step < steps):
            result = back_substitute(net, hidden, depth, lam, xl, xu, alphas, betas, signs)
        upper = result.upper.detach()
        better = upper < best
        best = torch.where(better, upper, best)
        for kept, now in zip(best_alphas + best_betas, alphas + betas):
            if kept is not None:
                kept.copy_(torch.where(better.unsqueeze(-1), now.detach(), kept))
        if optimiser is None or step == steps or (stop_below is not None and bool((best < stop_below).all())):
            break
        if time.perf_counter() > deadline:
            break
        optimiser.zero_grad()
        result.upper.sum().backward()
        optimiser.step()
        scheduler.step()
        with torch.no_grad():
            for a in alphas:
                if a is not None:
                    a.clamp_(0.0, 1.0)
            for b in betas:
                if b is not None:
                    b.clamp_min_(0.0)
    result.upper = result.upper.detach()
    return Optimised(best + BOUND_SLACK * (1.0 + best.abs()), best_alphas, best_betas, result)


def optimised_hidden(
    net: ReluNetwork, hidden: list[Interval], xl: torch.Tensor, xu: torch.Tensor, *, steps: int,
    deadline: float = math.inf,
) -> list[Interval]:
    """Tighten the bounds of z_1, ..., z_{L-1} layer by layer with alpha-CROWN (each neuron's
    lower and upper bound its own slopes), intersected with the given (e.g. CROWN) bounds.
    Each box re-bounds the neurons whose bounds can change one of its relaxations (a ReLU's
    unstable inputs; for a ReLU feeding a max-pool, also the inputs that can set an open window's
    relaxation: `relaxation_needs`, as `hidden_bounds` chooses them), in chunks of rows within
    HIDDEN_ELEMENTS; a max-pool fed through the identity gets its ReLU's tightened outputs. Past
    `deadline` the optimisation stops early (the bounds stay valid)."""
    out = list(hidden)
    for depth in range(1, len(net.nonlinear)):
        lo, up = out[depth]
        if not net.affines[depth].ops:  # an identity passes the previous non-linearity's bounds
            new_lo, new_up = net.nonlinear[depth - 1].interval(*out[depth - 1])
            out[depth] = (torch.maximum(lo, new_lo), torch.minimum(up, new_up))
            continue
        index, valid = neuron_rows(relaxation_needs(net, depth, lo, up))
        chunk = max(1, HIDDEN_ELEMENTS // (2 * lo.shape[0] * max(a.widest for a in net.affines[: depth + 1])))
        for start in range(0, index.shape[1], chunk):  # rows are optimised independently: chunks are exact
            part, ok = index[:, start : start + chunk], valid[:, start : start + chunk]
            rows = one_hot_rows(part, ok, lo.shape[1], lo.dtype)
            upper = optimise(net, out, depth, torch.cat([rows, -rows], 1), xl, xu, steps=steps, deadline=deadline).upper
            out[depth] = intersect_at(out[depth], part, ok, (-upper[:, part.shape[1] :], upper[:, : part.shape[1]]))
    return out


@dataclass
class AlphaBounds:
    """alpha-CROWN margin bounds per box: lower (B, C) on z_y - z_k (+inf at k = y), the hidden
    bounds they used, and the slopes per margin row (rows k != y in class order)."""

    lower: torch.Tensor
    hidden: list[Interval]
    alphas: list[torch.Tensor | None]


def alpha_margin_bounds(
    net: ReluNetwork, xl: torch.Tensor, xu: torch.Tensor, labels: torch.Tensor, *, steps: int = 20,
    hidden_steps: int = 20,
) -> AlphaBounds:
    """Lower bounds on the margins z_y - z_k over each box: CROWN hidden bounds tightened by
    alpha-CROWN (`hidden_steps`), then the margins' own slopes optimised for `steps` steps
    (stopping once every margin is proven positive). Never looser than CROWN: CROWN's own
    margin bounds (which tighter hidden bounds can change either way, through the adaptive
    slopes) are kept where better."""
    hidden = hidden_bounds(net, xl, xu)
    classes = net.num_classes
    others, rows = rival_rows(labels, classes)
    crown = spec_lower(net, hidden, rows, xl, xu)
    if hidden_steps:
        hidden = optimised_hidden(net, hidden, xl, xu, steps=hidden_steps)
    opt = optimise(net, hidden, len(net.nonlinear), -rows, xl, xu, steps=steps, stop_below=0.0)
    lower = torch.full((len(labels), classes), torch.inf, dtype=xl.dtype)
    lower.scatter_(1, others, torch.maximum(-opt.upper, crown))
    return AlphaBounds(lower, hidden, opt.alphas)
