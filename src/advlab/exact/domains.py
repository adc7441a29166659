"""The open sub-domains of branch and bound (`advlab.exact.bab`), as batched tensors.

A sub-domain of the input box is a goal (rows C, offsets d: is there x with C z(x) <= d?) and
a set of split constraints s_j z_j >= 0 on ReLU inputs (s_j = +1 active, -1 inactive, 0 not
split), stored with the slopes and multipliers that bounded it (warm starts for its children)
and its lower bound of max_r (C_r z - d_r). `Domains` holds D of them as tensors with a leading
axis D; `Pool` keeps the open ones and hands out those with the lowest bounds; `split` gives
the 2^m children of a sub-domain split on m neurons (Bunel et al. 2020, "Branch and bound for
piecewise linear neural network verification"; Wang et al. 2021, "Beta-CROWN", Sec. 3).
`relaxed` fixes every non-linearity's relaxation over a batch's hidden bounds, so that one
optimisation of its slopes and multipliers computes it once, not at every step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from advlab.exact.bounds import Interval
from advlab.exact.operators import MaxPool, MaxRelaxation, Relu, ReluRelaxation
from advlab.exact.relu_network import ReluNetwork

STORED = torch.float32  # slopes, multipliers and scores kept between rounds (warm starts only: any value is sound)
SIGN = torch.int8  # split signs as stored per sub-domain
MAX_CHUNKS = 32  # the open sub-domains are kept in at most this many batches (merged beyond)


def indexed(t: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor | None:
    """t[index]; None for a layer that stores nothing."""
    return None if t is None else t[index]


def _join(parts: list[torch.Tensor | None]) -> torch.Tensor | None:
    return None if parts[0] is None else torch.cat(parts)


@dataclass
class Domains:
    """Open sub-domains, batched: their goal's rows (D, R, C) and offsets (D, R) (C z <= d); per
    non-linearity the split signs (D, W) in {-1, 0, +1} (SIGN), the slopes (D, R, W; a max-pool's
    (D, R, 2 out k)) and split multipliers (D, R, W) (STORED), signs and multipliers None for a
    layer that is not split (max-pool); lower bounds of max_r (C_r z - d_r) (D,); branching
    scores over the ReLU layers' neurons, concatenated (D, sum W) (STORED); per layer the bounds
    of its input (D, W) each where they were re-bounded (`refine`), else None: the root's,
    clamped by the splits."""

    rows: torch.Tensor
    offsets: torch.Tensor
    signs: list[torch.Tensor | None]
    alphas: list[torch.Tensor | None]
    betas: list[torch.Tensor | None]
    lower: torch.Tensor
    scores: torch.Tensor
    hidden: list[Interval] | None = None

    def __len__(self) -> int:
        return len(self.lower)

    def take(self, index: torch.Tensor) -> Domains:
        hidden = None if self.hidden is None else [(lo[index], up[index]) for lo, up in self.hidden]
        return Domains(self.rows[index], self.offsets[index], [indexed(s, index) for s in self.signs],
                       [indexed(a, index) for a in self.alphas], [indexed(b, index) for b in self.betas],
                       self.lower[index], self.scores[index], hidden)

    @staticmethod
    def cat(parts: list[Domains]) -> Domains:
        if len(parts) == 1:
            return parts[0]
        hidden = None if parts[0].hidden is None else [
            (torch.cat([lo for lo, _ in z]), torch.cat([up for _, up in z])) for z in zip(*[p.hidden for p in parts])]
        return Domains(torch.cat([p.rows for p in parts]), torch.cat([p.offsets for p in parts]),
                       [_join(list(z)) for z in zip(*[p.signs for p in parts])],
                       [_join(list(z)) for z in zip(*[p.alphas for p in parts])],
                       [_join(list(z)) for z in zip(*[p.betas for p in parts])],
                       torch.cat([p.lower for p in parts]), torch.cat([p.scores for p in parts]), hidden)


class Pool:
    """The open sub-domains, as the batches the rounds bounded them in: picking marks sub-domains
    taken instead of copying the rest; a batch is compacted once half of it is taken, and all
    are merged when there are more than MAX_CHUNKS."""

    def __init__(self) -> None:
        self.parts: list[Domains] = []
        self.alive: list[torch.Tensor] = []
        self.count = 0

    def add(self, domains: Domains) -> None:
        if len(domains):
            self.parts.append(domains)
            self.alive.append(torch.ones(len(domains), dtype=torch.bool))
            self.count += len(domains)
        if len(self.parts) > MAX_CHUNKS:
            merged = Domains.cat([p.take(a.nonzero().flatten()) for p, a in zip(self.parts, self.alive)])
            self.parts, self.alive = [merged], [torch.ones(len(merged), dtype=torch.bool)]

    def pick(self, batch: int) -> Domains:
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
        return Domains.cat(taken)


def split(chosen: Domains, neurons: torch.Tensor) -> Domains:
    """2^m children per domain, one per sign pattern of its m given neurons (flat indices over
    the ReLU layers, (D, m)): s = +1 (active) or -1 (inactive) on each; children in
    pattern-major order."""
    layers = [i for i, s in enumerate(chosen.signs) if s is not None]
    d, m = neurons.shape
    children = Domains.cat([chosen] * (1 << m))
    children.signs = [s if s is None else s.clone() for s in children.signs]
    pattern = torch.arange(1 << m).repeat_interleave(d)
    for j in range(m):
        sign = torch.where((pattern >> j) & 1 == 1, -1, 1).to(SIGN)
        flat = neurons[:, j].repeat(1 << m)
        start = 0
        for layer in layers:
            width = children.signs[layer].shape[1]
            rows = ((flat >= start) & (flat < start + width)).nonzero().flatten()
            children.signs[layer][rows, flat[rows] - start] = sign[rows]
            start += width
    return children


@dataclass(frozen=True)
class _Fixed:
    """A non-linearity over input bounds that stay fixed during one optimisation: its relaxation
    computed once (a ReLU's lower slopes, the parameters, set per call), not at every step."""

    op: Relu | MaxPool
    relax: ReluRelaxation | MaxRelaxation
    unstable: torch.Tensor | None = None  # (B, 1, W), ReLU only
    active: torch.Tensor | None = None

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.op(z)

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> Interval:
        return self.op.interval(lower, upper)

    def relaxation(self, lower: torch.Tensor, upper: torch.Tensor, alpha: torch.Tensor | None = None
                   ) -> ReluRelaxation | MaxRelaxation:
        if alpha is None:
            return self.relax
        if self.unstable is None:  # a max-pool: its upper slopes
            return self.op.relaxation(lower, upper, alpha)
        return ReluRelaxation(torch.where(self.unstable, alpha, self.active), self.relax.su, self.relax.tu)


def relaxed(net: ReluNetwork, hidden: list[Interval]) -> ReluNetwork:
    """The network with every non-linearity's relaxation over `hidden` computed once."""
    fixed = []
    for g, (lo, up) in zip(net.nonlinear, hidden):
        if isinstance(g, Relu):
            unstable = ((lo < 0) & (up > 0)).unsqueeze(1)
            fixed.append(_Fixed(g, g.relaxation(lo, up), unstable, (lo >= 0).to(lo.dtype).unsqueeze(1)))
        else:
            fixed.append(_Fixed(g, g.relaxation(lo, up)))
    return ReluNetwork(net.affines, tuple(fixed), net.input_shape)
