"""Complete verification of one input by branch and bound on ReLU splits (beta-CROWN style).

Question (`search`): is there x' in an input box [xl, xu] and a goal g with C_g z(x') <= d_g
(every row of the goal's linear output constraints)? Robustness (`branch_and_bound`) is the
case B = {x' in box : ||x' - x||_inf <= eps}, one goal per class k != y with the single row
z_y - z_k <= 0. Per open goal the search keeps sub-domains of the box, each a set of split
constraints s_j z_j >= 0 on ReLU inputs (Bunel et al. 2020, "Branch and bound for piecewise
linear neural network verification"; Wang et al. 2021, "Beta-CROWN", Sec. 3):

1. Root: CROWN hidden bounds tightened by alpha-CROWN, then each row's slopes optimised
   (`advlab.exact.optimized`). A goal is settled when some row has a lower bound of C_r z above
   d_r (no point of the sub-domain meets that row).
2. Repeatedly take the `batch` sub-domains with the lowest bounds, split each on the unstable
   neuron whose upper relaxation adds the largest intercept to the bound (the BaBSR score of
   Bunel et al., Sec. 5.1), and bound both children at once: hidden bounds clamped by the
   splits, slopes (warm-started from the parent) and split multipliers beta optimised together.
   A child is discarded when its bound is positive or its clamped bounds are empty (l > u).
3. Each bound's minimising input (a corner of the box) is run through the network: one that
   meets every row of its goal is a candidate counterexample, accepted only if `check`
   confirms it (the model in float64, inside the box).
4. A sub-domain without unstable neurons is a polytope on which the network is affine: one LP
   (HiGHS) gives the exact minimum of max_r (C_r z - d_r) (proof, or a point for `check`).

The slopes and multipliers of a round are optimised in float32 where the network is dense
(the bound at any slopes in [0, 1] and multipliers >= 0 is valid), then the bound itself is
evaluated once in float64 at the best ones found: the float32 pass only steers the search.

All sub-domains of a goal discarded = proven; `time_limit` (checked inside each round's
optimisation and by the LPs too, so that the search stops within one optimisation step of it)
or `max_domains` reached = unknown.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linprog

from advlab.exact.bounds import BOUND_SLACK, Interval, box, hidden_bounds, spec_lower
from advlab.exact.operators import Dense
from advlab.exact.optimized import Optimised, Pass, back_substitute, clamp_splits, optimise, optimised_hidden
from advlab.exact.relu_network import Affine, ReluNetwork, Relu

LP_MARGIN = 1e-6  # an LP leaf is proven only when its minimum margin exceeds this (solver tolerance)
STORED = torch.float32  # slopes and multipliers kept between rounds (warm starts only: any value is sound)
MAX_CHUNKS = 32  # the open sub-domains are kept in at most this many batches (merged beyond)


@dataclass(frozen=True)
class BabSettings:
    """batch: sub-domains split per round, each on m <= max_splits neurons at once (2^m
    children; m as large as keeps the children within 2 batch); steps: slope/multiplier steps
    per bound (root_steps at the root); refine: re-bound the hidden layers after each split
    (CROWN over the sub-domain, intersected with the parent's bounds); max_domains: open
    sub-domains kept before giving up."""

    batch: int = 256
    steps: int = 10
    root_steps: int = 50
    max_splits: int = 2
    refine: bool = False
    max_domains: int = 100_000


@dataclass(frozen=True)
class BabOutcome:
    """status "robust" | "counterexample" | "unknown"; point: the confirmed counterexample (n,);
    domains: sub-domains bounded; reason: why the search stopped unfinished."""

    status: str
    point: torch.Tensor | None = None
    domains: int = 0
    reason: str = ""


def supports(net: ReluNetwork) -> bool:
    """Branch and bound splits ReLUs: networks with max-pool layers go to the MILP instead."""
    return all(isinstance(g, Relu) for g in net.nonlinear)


@dataclass
class _Domains:
    """Open sub-domains, batched: their goal's rows (D, R, C) and offsets (D, R) (C z <= d), per
    ReLU layer the bounds of its input over the sub-domain (D, W) each, signs/slopes/multipliers
    (D, W) / (D, R, W) / (D, R, W) (the last two in STORED precision), lower bounds of max_r (C_r z - d_r) (D,), branching scores
    (D, sum W)."""

    rows: torch.Tensor
    offsets: torch.Tensor
    hidden: list[Interval]
    signs: list[torch.Tensor]
    alphas: list[torch.Tensor]
    betas: list[torch.Tensor]
    lower: torch.Tensor
    scores: torch.Tensor

    def __len__(self) -> int:
        return len(self.lower)

    def take(self, index: torch.Tensor) -> _Domains:
        return _Domains(self.rows[index], self.offsets[index], [(lo[index], up[index]) for lo, up in self.hidden],
                        [s[index] for s in self.signs], [a[index] for a in self.alphas],
                        [b[index] for b in self.betas], self.lower[index], self.scores[index])

    @staticmethod
    def cat(parts: list[_Domains]) -> _Domains:
        if len(parts) == 1:
            return parts[0]
        hidden = [(torch.cat([lo for lo, _ in z]), torch.cat([up for _, up in z])) for z in zip(*[p.hidden for p in parts])]
        return _Domains(torch.cat([p.rows for p in parts]), torch.cat([p.offsets for p in parts]), hidden, [torch.cat(z) for z in zip(*[p.signs for p in parts])],
                        [torch.cat(z) for z in zip(*[p.alphas for p in parts])],
                        [torch.cat(z) for z in zip(*[p.betas for p in parts])],
                        torch.cat([p.lower for p in parts]), torch.cat([p.scores for p in parts]))


def branch_and_bound(
    net: ReluNetwork, x: torch.Tensor, label: int, eps: float, bounds: tuple[float, float], *, time_limit: float,
    check: Callable[[torch.Tensor], torch.Tensor | None], settings: BabSettings = BabSettings(),
) -> BabOutcome:
    """Decide robustness of x (n,) float64 at L-inf radius eps (module docstring). `check` takes
    a candidate input (n,) and returns a confirmed counterexample or None."""
    xl, xu = box(x.unsqueeze(0), eps, bounds)
    eye = torch.eye(net.num_classes, dtype=torch.float64)
    others = [k for k in range(net.num_classes) if k != label]
    rows = torch.stack([eye[label] - eye[k] for k in others]).unsqueeze(1)  # z_y - z_k <= 0, one goal per k
    return search(net, xl[0], xu[0], rows, torch.zeros(len(others), 1, dtype=torch.float64), time_limit=time_limit,
                  check=check, settings=settings)


def search(
    net: ReluNetwork, xl: torch.Tensor, xu: torch.Tensor, rows: torch.Tensor, offsets: torch.Tensor, *,
    time_limit: float, check: Callable[[torch.Tensor], torch.Tensor | None], settings: BabSettings = BabSettings(),
) -> BabOutcome:
    """Is there x in [xl, xu] (n,) meeting rows[g] z(x) <= offsets[g] for some goal g? rows
    (G, R, C), offsets (G, R) (pad short goals by repeating a row). "robust": no such x;
    "counterexample": `check`'s confirmed point; "unknown": stopped (module docstring)."""
    deadline = time.perf_counter() + time_limit
    xl, xu = xl.unsqueeze(0), xu.unsqueeze(0)
    goals, width = rows.shape[0], rows.shape[1]
    flat = rows.reshape(1, goals * width, -1)
    hidden = hidden_bounds(net, xl, xu)
    crown = spec_lower(net, hidden, flat, xl, xu)
    if settings.root_steps:
        hidden = optimised_hidden(net, hidden, xl, xu, steps=settings.root_steps, deadline=deadline)
    root = optimise(net, hidden, len(net.nonlinear), -flat, xl, xu, steps=settings.root_steps,
                    stop_below=-offsets.reshape(1, -1), deadline=deadline)
    lower = torch.maximum(-root.upper, crown).reshape(goals, width)
    open_goals = ((lower - offsets).amax(1) <= 0).nonzero().flatten()
    if not len(open_goals):
        return BabOutcome("robust")
    if time.perf_counter() > deadline:
        return BabOutcome("unknown", reason="time limit")
    fast = _single(net)
    alphas = [a if a is None else a[0].reshape(goals, width, -1)[open_goals].to(STORED) for a in root.alphas]
    signs = [torch.zeros(len(open_goals), lo.shape[1], dtype=torch.float64) for lo, _ in hidden]
    start = _Domains(rows[open_goals], offsets[open_goals],
                     [(lo.expand(len(open_goals), -1), up.expand(len(open_goals), -1)) for lo, up in hidden],
                     signs, alphas, [torch.zeros_like(a) for a in alphas],
                     torch.zeros(len(open_goals), dtype=torch.float64), torch.zeros(0))
    first = _bound(net, fast, xl, xu, start, settings.steps, check, refine=False, deadline=deadline)
    if isinstance(first, torch.Tensor):
        return BabOutcome("counterexample", first, len(open_goals))
    pool = _Pool()
    pool.add(first)
    bounded = len(open_goals)
    unsure = False
    while pool.count:
        if time.perf_counter() > deadline:
            return BabOutcome("unknown", domains=bounded, reason="time limit")
        if pool.count > settings.max_domains:
            return BabOutcome("unknown", domains=bounded, reason=f"more than {settings.max_domains} open sub-domains")
        chosen = pool.pick(settings.batch)
        leaves = chosen.scores.amax(1) < 0
        if bool(leaves.any()):
            for i in leaves.nonzero().flatten().tolist():
                verdict = _leaf(net, xl, xu, chosen.take(torch.tensor([i])), check, deadline)
                if isinstance(verdict, torch.Tensor):
                    return BabOutcome("counterexample", verdict, bounded)
                unsure |= verdict is None
            chosen = chosen.take((~leaves).nonzero().flatten())
        if not len(chosen):
            continue
        # split on several neurons at once while the batch has room (fewer, fuller rounds)
        m = max(1, min(settings.max_splits, int(math.log2(2 * settings.batch / len(chosen)))))
        children = _split(chosen, chosen.scores.topk(min(m, chosen.scores.shape[1]), dim=1).indices)
        bounded += len(children)
        result = _bound(net, fast, xl, xu, children, settings.steps, check, refine=settings.refine, deadline=deadline)
        if isinstance(result, torch.Tensor):
            return BabOutcome("counterexample", result, bounded)
        if time.perf_counter() > deadline:
            return BabOutcome("unknown", domains=bounded, reason="time limit")
        pool.add(result)
    if unsure:
        return BabOutcome("unknown", domains=bounded, reason="an LP leaf's minimum is within solver tolerance of 0")
    return BabOutcome("robust", domains=bounded)


class _Pool:
    """The open sub-domains, as the batches `_bound` returned them: picking marks sub-domains
    taken instead of copying the rest; a batch is compacted once half of it is taken, and all
    are merged when there are more than MAX_CHUNKS."""

    def __init__(self) -> None:
        self.parts: list[_Domains] = []
        self.alive: list[torch.Tensor] = []
        self.count = 0

    def add(self, domains: _Domains) -> None:
        if len(domains):
            self.parts.append(domains)
            self.alive.append(torch.ones(len(domains), dtype=torch.bool))
            self.count += len(domains)
        if len(self.parts) > MAX_CHUNKS:
            merged = _Domains.cat([p.take(a.nonzero().flatten()) for p, a in zip(self.parts, self.alive)])
            self.parts, self.alive = [merged], [torch.ones(len(merged), dtype=torch.bool)]

    def pick(self, batch: int) -> _Domains:
        """The `batch` open sub-domains with the lowest bounds, taken out of the pool."""
        lower = torch.cat([torch.where(a, p.lower, math.inf) for p, a in zip(self.parts, self.alive)])
        chosen = torch.zeros(len(lower), dtype=torch.bool)
        chosen[torch.topk(lower, min(batch, self.count), largest=False).indices] = True
        taken, parts, alive, start = [], [], [], 0
        for part, live in zip(self.parts, self.alive):
            mask = chosen[start : start + len(part)]
            start += len(part)
            if bool(mask.any()):
                taken.append(part.take(mask.nonzero().flatten()))
                live = live & ~mask
            left = int(live.sum())
            if left and 2 * left < len(part):
                part, live = part.take(live.nonzero().flatten()), torch.ones(left, dtype=torch.bool)
            if left:
                parts.append(part)
                alive.append(live)
        self.parts, self.alive = parts, alive
        self.count -= int(chosen.sum())
        return _Domains.cat(taken)


def _single(net: ReluNetwork) -> ReluNetwork | None:
    """A float32 copy of a network of dense layers (None for any other), for the optimisation."""
    if not all(isinstance(op, Dense) and not op.sparse for a in net.affines for op in a.ops):
        return None
    affines = []
    for a in net.affines:
        single = Affine(tuple(Dense(op.weight.float(), op.bias.float()) for op in a.ops), a.width)
        single.__dict__["bias"] = a.bias.float()  # the cached offset, in float32 (Affine computes it in float64)
        affines.append(single)
    return ReluNetwork(tuple(affines), net.nonlinear, net.input_shape)


def _empty(clamped: list[Interval]) -> torch.Tensor:
    empty = torch.zeros(len(clamped[0][0]), dtype=torch.bool)
    for lo, up in clamped:
        empty |= (lo > up).any(1)
    return empty


def _split(chosen: _Domains, neurons: torch.Tensor) -> _Domains:
    """2^m children per domain, one per sign pattern of its m given neurons (flat indices,
    (D, m)): s = +1 (active) or -1 (inactive) on each; children in pattern-major order."""
    widths = [s.shape[1] for s in chosen.signs]
    d, m = neurons.shape
    children = _Domains.cat([chosen] * (1 << m))
    children.signs = [s.clone() for s in children.signs]
    pattern = torch.arange(1 << m).repeat_interleave(d)
    for j in range(m):
        sign = torch.where((pattern >> j) & 1 == 1, -1.0, 1.0).double()
        flat = neurons[:, j].repeat(1 << m)
        start = 0
        for layer, width in enumerate(widths):
            rows = ((flat >= start) & (flat < start + width)).nonzero().flatten()
            children.signs[layer][rows, flat[rows] - start] = sign[rows]
            start += width
    children.hidden = clamp_splits(children.hidden, children.signs)
    return children


def _bound(
    net: ReluNetwork, fast: ReluNetwork | None, xl: torch.Tensor, xu: torch.Tensor, domains: _Domains, steps: int,
    check: Callable[[torch.Tensor], torch.Tensor | None], *, refine: bool, deadline: float = math.inf,
) -> _Domains | torch.Tensor:
    """Bound the domains (hidden bounds refined, then alpha and beta optimised, in float32 on
    `fast` when given); the open ones with their scores, or a confirmed counterexample."""
    d = len(domains)
    xl, xu = xl.expand(d, -1), xu.expand(d, -1)
    hidden = _refined(net, xl, xu, domains) if refine else domains.hidden
    empty = _empty(hidden)
    opt = _optimised(net, fast, hidden, xl, xu, domains, steps, deadline)
    lower = (-opt.upper - domains.offsets).amax(1)
    candidates = opt.last.argmax  # (D, R, n): each row's minimising corner
    values = torch.einsum("drc,dqc->drq", net.logits(candidates), domains.rows) - domains.offsets.unsqueeze(1)
    hits = (values < 0).all(2) if _is_robustness(domains) else (values <= 0).all(2)
    for d, r in hits.nonzero().tolist():
        point = check(candidates[d, r])
        if point is not None:
            return point
    keep = ~empty & (lower <= 0)
    scores = torch.cat([torch.where((lo < 0) & (up > 0), t.amax(1), -1.0)
                        for (lo, up), t in zip(hidden, opt.last.intercepts)], 1)
    index = keep.nonzero().flatten()
    return _Domains(domains.rows[index], domains.offsets[index], [(lo[index], up[index]) for lo, up in hidden],
                    [s[index] for s in domains.signs], [a[index].to(STORED) for a in opt.alphas],
                    [b[index].to(STORED) for b in opt.betas], lower[index], scores[index])


def _optimised(
    net: ReluNetwork, fast: ReluNetwork | None, hidden: list[Interval], xl: torch.Tensor, xu: torch.Tensor,
    domains: _Domains, steps: int, deadline: float,
) -> Optimised:
    """alpha/beta-optimised upper bounds of -C_r z over the domains: in float64 on `net`, or
    optimised in float32 on `fast` and then evaluated once in float64 at the best parameters."""
    depth = len(net.nonlinear)
    if fast is None:
        return optimise(net, hidden, depth, -domains.rows, xl, xu, steps=steps,
                        alphas=[a.double() for a in domains.alphas], betas=[b.double() for b in domains.betas],
                        signs=domains.signs, stop_below=-domains.offsets, deadline=deadline)
    single = torch.float32
    opt = optimise(fast, [(lo.to(single), up.to(single)) for lo, up in hidden], depth, -domains.rows.to(single),
                   xl.to(single), xu.to(single), steps=steps, alphas=[a.to(single) for a in domains.alphas],
                   betas=[b.to(single) for b in domains.betas], signs=[s.to(single) for s in domains.signs],
                   stop_below=-domains.offsets.to(single), deadline=deadline)
    alphas, betas = [a.double() for a in opt.alphas], [b.double() for b in opt.betas]
    with torch.no_grad():
        upper = back_substitute(net, hidden, depth, -domains.rows, xl, xu, alphas, betas, domains.signs).upper
    # branching scores and candidate corners from the last iterate, as on the float64 path (the
    # intercepts at the best iterate branch far worse: 3-7x the sub-domains on mnistfc 256x4)
    last = Pass(opt.last.upper.double(), opt.last.argmax.double(),
                [t if t is None else t.double() for t in opt.last.intercepts])
    return Optimised(upper + BOUND_SLACK * (1.0 + upper.abs()), alphas, betas, last)


def _is_robustness(domains: _Domains) -> bool:
    """One zero-offset row per goal: candidates need a strictly negative margin (as before)."""
    return domains.rows.shape[1] == 1 and not bool(domains.offsets.any())


def _refined(net: ReluNetwork, xl: torch.Tensor, xu: torch.Tensor, domains: _Domains) -> list[Interval]:
    """Each domain's hidden bounds, layer by layer from the second, intersected with CROWN over
    the sub-domain (the earlier layers' relaxations use their split-clamped bounds), then
    clamped by the splits again. Only neurons unstable in some domain are re-bounded."""
    hidden = list(domains.hidden)
    none: list[torch.Tensor | None] = [None] * len(hidden)
    for depth in range(1, len(hidden)):
        lo, up = hidden[depth]
        index = ((lo < 0) & (up > 0)).any(0).nonzero().flatten()
        if not len(index):
            continue
        eye = torch.eye(lo.shape[1], dtype=lo.dtype)[index]
        upper = back_substitute(net, hidden, depth, torch.cat([eye, -eye]).expand(len(lo), -1, -1), xl, xu,
                                none, none, domains.signs).upper
        upper = upper + BOUND_SLACK * (1.0 + upper.abs())
        k = len(index)
        lo, up = lo.clone(), up.clone()
        up[:, index] = torch.minimum(up[:, index], upper[:, :k])
        lo[:, index] = torch.maximum(lo[:, index], -upper[:, k:])
        hidden[depth] = clamp_splits([(lo, up)], [domains.signs[depth]])[0]
    return hidden


def _leaf(
    net: ReluNetwork, xl: torch.Tensor, xu: torch.Tensor, domain: _Domains,
    check: Callable[[torch.Tensor], torch.Tensor | None], deadline: float = math.inf,
) -> bool | torch.Tensor | None:
    """The exact minimum of max_r (C_r z - d_r) over a sub-domain with every ReLU fixed, by one LP: True
    (proven), a confirmed counterexample, or None (a minimum too close to 0 to trust, or the LP
    stopped at the deadline)."""
    clamped = domain.hidden
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
    goal, offset = domain.rows[0], domain.offsets[0]
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
