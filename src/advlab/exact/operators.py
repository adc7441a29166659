"""One bound class per non-linear operator: the auto_LiRPA design (Xu et al. 2020, "Automatic
perturbation analysis for scalable certified robustness and beyond", Sec. 3).

Every operator owns what bound propagation asks of it, on flat per-example vectors (the
network's values are (B, width); linear bounds are (B, R, width), one row per bounded
quantity). The linear operators (`Dense`, `Conv`, `Diagonal`) are in
`advlab.exact.linear_operators`; the non-linear ones here (`Relu`, `MaxPool`) own the map
itself, `interval` (both are monotone), `relaxation(lower, upper)`, linear functions below and
above them over their input bounds, whose `back` substitutes them into a row (lam -> lam',
constant), and `needs_bounds`: the inputs whose bounds change the relaxation (a ReLU's
unstable inputs; every input of a pool).

ReLU with l < 0 < u:  a z <= relu(z) <= u (z - l) / (u - l), a = 1 if u >= -l else 0 (CROWN's
adaptive slope) or any a in [0, 1] (alpha-CROWN); max over a window: z_m <= max(z), m the input
with the largest lower bound (or any convex combination of the inputs, alpha-CROWN), and
max(z) <= sum_i a_i (z_i - l_i) + max_j (u_j - a_j (u_j - l_j)) for any a in [0, 1]^k (the
smallest constant valid over the box for these slopes; a = 0 is DeepPoly's constant max_i u_i,
Singh et al. 2019, Sec. 4; CROWN's choice is the line of least volume, `MaxPool.relaxation`), and
max(z) = z_m when l_m >= u_i for every other input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch


@dataclass(frozen=True)
class ReluRelaxation:
    """sl z <= relu(z) <= su z + tu, elementwise; su, tu (B, 1, W), sl (B, 1, W) or (B, R, W)
    (alpha-CROWN's per-row slopes)."""

    sl: torch.Tensor
    su: torch.Tensor
    tu: torch.Tensor

    def back(self, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """An upper bound lam . relu(z) <= lam' . z + c: (lam', c); the intercepts summed by a
        batched matrix product."""
        const = torch.matmul(lam.clamp_min(0.0), self.tu.transpose(-1, -2)).squeeze(-1)  # tu is (B, 1, W)
        return lam * torch.where(lam >= 0, self.su, self.sl), const

    def intercepts(self, lam: torch.Tensor) -> torch.Tensor:
        """What each neuron's upper intercept adds to the bound of each row (B, R, W)."""
        return (lam.clamp_min(0.0) * self.tu).detach()

    def take(self, index: torch.Tensor) -> ReluRelaxation:
        """The relaxation of the neurons index (B, K) only, in that order."""
        return ReluRelaxation(*(t.gather(-1, index.unsqueeze(1).expand(-1, t.shape[1], -1)) for t in (self.sl, self.su, self.tu)))


@dataclass(frozen=True)
class MaxRelaxation:
    """z[lower_index] <= h <= sum_j upper_slope_j z[upper_index_j] + upper_const per window:
    lower_index (B, out); upper_index (B, out, k') (k' = 1: the input with the largest upper
    bound; k' = k: the whole window), upper_slope (B, S, out, k') and upper_const (B, S, out)
    with S = 1 or one per bounded row (alpha-CROWN); `reach` (B, S, out): the upper function's
    largest value over the box, 0 on a dominated window (there h = z[lower_index] exactly).
    `disjoint`: no input is in two windows."""

    lower_index: torch.Tensor
    upper_index: torch.Tensor
    upper_slope: torch.Tensor
    upper_const: torch.Tensor
    reach: torch.Tensor
    inputs: int
    disjoint: bool = False
    lower_weight: torch.Tensor | None = None  # (B, S, out, k): h >= sum_j w_j z[upper_index_j] instead

    def _parts(self, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """lam . h <= neg . z[lower_index] + up . z[upper_index] + const: (neg (B, R, out),
        up (B, R, out, k'), const (B, R))."""
        pos = lam.clamp_min(0.0)
        if self.upper_const.shape[1] == 1:  # one constant per window for every row: a matrix product
            const = torch.matmul(pos, self.upper_const.transpose(-1, -2)).squeeze(-1)
        else:
            const = (pos * self.upper_const).sum(-1)
        return lam.clamp_max(0.0), pos.unsqueeze(-1) * self.upper_slope, const

    def _spread(self, index: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        """Coefficients (B, R, ...) on z[index] (index (B, ...)) as coefficients on z (B, R, inputs)."""
        coef = coef.flatten(2)
        out = coef.new_zeros(*coef.shape[:-1], self.inputs)
        return out.scatter_add_(-1, index.flatten(1).unsqueeze(1).expand_as(coef), coef)

    def _pairs(self, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """With one upper input per window: lam . h <= coef . z[index] + const with index (B, 2 out)
        the lower then the upper input of every window, a dominated window's whole row on its
        lower input (B, R, 2 out)."""
        neg, up, const = self._parts(lam)
        top, up = self.upper_index[..., 0], up[..., 0]
        same = (top == self.lower_index).unsqueeze(1)
        coef = torch.cat([neg + torch.where(same, up, 0.0), torch.where(same, 0.0, up)], -1)
        return torch.cat([self.lower_index, top], -1), coef, const

    def back(self, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.upper_index.shape[-1] == 1:
            index, coef, const = self._pairs(lam)
            return self._spread(index, coef), const
        neg, up, const = self._parts(lam)
        if self.lower_weight is not None:  # the upper inputs are the whole window: one spread
            return self._spread(self.upper_index, up + neg.unsqueeze(-1) * self.lower_weight), const
        return self._spread(self.lower_index, neg) + self._spread(self.upper_index, up), const

    def back_through(self, relu: ReluRelaxation, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`back` of this max-pool, then of the ReLU relaxation `relu` that feeds it, for a
        disjoint pool: with one upper input per window the ReLU step is taken on the two picked
        inputs of each window only (`_pairs`: distinct inputs, their coefficients summed where
        they are the same one) before they are spread, which gives the same result since no
        input is in two windows."""
        if self.upper_index.shape[-1] != 1:
            on_h, const = self.back(lam)
            coef, extra = relu.back(on_h)
            return coef, const + extra
        index, coef, const = self._pairs(lam)
        coef, extra = relu.take(index).back(coef)
        return self._spread(index, coef), const + extra

    def intercepts(self, lam: torch.Tensor) -> torch.Tensor:
        """What each open window's upper function reaches over the box, weighted by the row's
        coefficient on it (B, R, out): lam+ U for CROWN's relaxation (U the window's largest
        upper bound), 0 on a dominated window."""
        return (lam.clamp_min(0.0) * self.reach).detach()


@dataclass(frozen=True)
class Relu:
    """h = max(z, 0) elementwise."""

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return z.clamp_min(0.0)

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self(lower), self(upper)

    def needs_bounds(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        """Inputs whose tighter bounds could change the relaxation: the unstable ones (B, W)."""
        return (lower < 0) & (upper > 0)

    def relaxation(self, lower: torch.Tensor, upper: torch.Tensor, alpha: torch.Tensor | None = None) -> ReluRelaxation:
        """CROWN's relaxation over [lower, upper] (B, W); `alpha` (B, R, W): per-row lower slopes
        of the unstable neurons instead of the adaptive ones."""
        unstable = (lower < 0) & (upper > 0)
        width = torch.where(unstable, upper - lower, 1.0)
        active = (lower >= 0).to(lower.dtype)
        su = torch.where(unstable, upper / width, active).unsqueeze(1)
        tu = torch.where(unstable, -lower * upper / width, 0.0).unsqueeze(1)
        if alpha is None:
            sl = torch.where(unstable, (upper >= -lower).to(lower.dtype), active).unsqueeze(1)
        else:
            sl = torch.where(unstable.unsqueeze(1), alpha, active.unsqueeze(1))
        return ReluRelaxation(sl, su, tu)


@dataclass(frozen=True)
class MaxPool:
    """h_o = max over the inputs in groups[o] (int64 (out, k), -1 pads short windows)."""

    groups: torch.Tensor

    @cached_property
    def padded(self) -> bool:
        """Some window is short (padding or the edge): -1 entries in groups."""
        return bool((self.groups < 0).any())

    @cached_property
    def disjoint(self) -> bool:
        """No input in two windows (stride >= kernel)."""
        valid = self.groups[self.groups >= 0]
        return len(valid.unique()) == len(valid)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        picked = z[..., self.groups.clamp_min(0)]
        return picked.masked_fill(self.groups < 0, -math.inf).amax(-1)

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self(lower), self(upper)

    def needs_bounds(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        """The inputs that can set the relaxation of a window no input dominates (B, W): every
        input whose upper bound exceeds the window's largest lower bound l_m (tighter bounds may
        make one of them dominant, make another the one with the largest lower bound, or lower
        the constant max_i u_i), and z_m itself. A dominated window is exact (h = z_m) and stays
        so under tighter bounds; an input with u_i <= l_m never matters."""
        gl, gu, best = self._windows(lower, upper)
        open_ = ~self._dominated(gl, gu, best)  # (B, out)
        index = self.groups.clamp_min(0)
        m = index.expand(lower.shape[0], -1, -1).gather(-1, best).squeeze(-1)
        contends = (gu > gl.gather(-1, best)) & open_.unsqueeze(-1)
        marks = lower.new_zeros(lower.shape)
        marks.scatter_add_(-1, index.flatten().expand(lower.shape[0], -1), contends.flatten(1).to(lower.dtype))
        marks.scatter_add_(-1, m, open_.to(lower.dtype))
        return marks > 0

    def _windows(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per window its inputs' bounds (B, out, k), -inf on padding, and the index of the input
        with the largest lower bound (B, out, 1) within it."""
        pad = self.groups < 0
        index = self.groups.clamp_min(0)
        gl = lower[..., index].masked_fill(pad, -math.inf)
        gu = upper[..., index].masked_fill(pad, -math.inf)
        return gl, gu, gl.argmax(-1, keepdim=True)

    def _dominated(self, gl: torch.Tensor, gu: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
        """Windows (B, out) where the input with the largest lower bound is the maximum on the box."""
        return gl.gather(-1, best).squeeze(-1) >= gu.scatter(-1, best, -math.inf).amax(-1)

    def initial_slopes(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        """CROWN's relaxation (`relaxation` without alpha) as alpha-CROWN's parameters, flat
        (B, 2 out k): the upper slopes over each window's inputs, then the lower weights (one-hot
        at m): the start of the optimisation."""
        gl, gu, best = self._windows(lower, upper)
        top, slope, _ = _top_line(gl, gu, best)
        dominated = self._dominated(gl, gu, best)
        slopes = torch.zeros_like(gl).scatter(-1, top, slope.unsqueeze(-1))
        exact = torch.zeros_like(gl).scatter(-1, best, 1.0)
        return torch.cat([torch.where(dominated.unsqueeze(-1), exact, slopes).flatten(-2), exact.flatten(-2)], -1)

    def relaxation(self, lower: torch.Tensor, upper: torch.Tensor, alpha: torch.Tensor | None = None) -> MaxRelaxation:
        """Linear bounds on each window's max over the inputs' bounds (B, W). Below: the input m
        with the largest lower bound or, with alpha, any convex combination sum_i w_i z_i of the
        window's inputs (w = b / sum_i b_i for weights b in [0, 1]^k; z_m where they are all 0).
        Above, for slopes a in [0, 1]^k (None: CROWN's choice below):

            max_i z_i <= sum_i a_i (z_i - l_i) + max_j (u_j - a_j (u_j - l_j)),

        valid on the box because the right side is affine and the left convex, so it suffices at
        the corners, where max_i z_i - sum_i a_i z_i <= max_j ((1 - a_j) u_j - sum_{i != j} a_i l_i).
        For each a this constant is the smallest valid one. CROWN's choice (the one of least
        volume over the box, as CROWN's ReLU upper bound): a single slope on the input t with
        the largest upper bound U, a_t = (U - g) / (U - l_t), g = max(l_m, U2), U2 the
        second-largest upper bound, giving g + a_t (z_t - l_t) <= U (the old constant bound) on
        the whole box. A dominated window (l_m >= u_i for every other input i) is exactly z_m.
        alpha (B, R, 2 out k): per row the slopes a of every window, then the weights b, both
        clipped to [0, 1] (`initial_slopes` gives CROWN's choice in this layout)."""
        gl, gu, best = self._windows(lower, upper)
        dominated = self._dominated(gl, gu, best)
        lower_index = self.groups.clamp_min(0).expand(lower.shape[0], -1, -1).gather(-1, best).squeeze(-1)
        if alpha is None:
            top, slope, const = _top_line(gl, gu, best)
            upper_index = self.groups.clamp_min(0).expand(lower.shape[0], -1, -1).gather(-1, top)
            upper_index = torch.where(dominated.unsqueeze(-1), lower_index.unsqueeze(-1), upper_index)
            slope = torch.where(dominated, 1.0, slope)
            const = torch.where(dominated, 0.0, const)
            reach = torch.where(dominated, 0.0, gu.amax(-1))
            return MaxRelaxation(lower_index, upper_index, slope.unsqueeze(1).unsqueeze(-1), const.unsqueeze(1),
                                 reach.unsqueeze(1), lower.shape[-1], self.disjoint)
        pad = self.groups < 0
        a, b = alpha.unflatten(-1, (2, *self.groups.shape)).clamp(0.0, 1.0).unbind(-3)  # (B, R, out, k) each
        exact = torch.zeros_like(gl).scatter(-1, best, 1.0).unsqueeze(1)
        a = torch.where(dominated.unsqueeze(1).unsqueeze(-1), exact, a)
        if self.padded:
            b = b.masked_fill(pad, 0.0)
        total = b.sum(-1, keepdim=True)
        weight = torch.where((total > 0) & ~dominated.unsqueeze(1).unsqueeze(-1), b / torch.where(total > 0, total, 1.0), exact)
        l0, u0 = gl.unsqueeze(1), gu.unsqueeze(1)
        if self.padded:
            a, l0, u0 = a.masked_fill(pad, 0.0), l0.masked_fill(pad, 0.0), u0.masked_fill(pad, 0.0)
        corner = u0 - a * (u0 - l0)
        corner = (corner.masked_fill(pad, -math.inf) if self.padded else corner).amax(-1)
        const = torch.where(dominated.unsqueeze(1), 0.0, corner - (a * l0).sum(-1))
        reach = torch.where(dominated.unsqueeze(1), 0.0, const + (a * u0).sum(-1))
        upper_index = self.groups.clamp_min(0).expand(lower.shape[0], -1, -1)
        return MaxRelaxation(lower_index, upper_index, a, const, reach, lower.shape[-1], self.disjoint, weight)


def _top_line(gl: torch.Tensor, gu: torch.Tensor, best: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CROWN's upper line of each window's max (module docstring of `MaxPool.relaxation`): the
    position t of the largest upper bound (B, out, 1), its slope and the constant (B, out)."""
    values, order = gu.topk(min(2, gu.shape[-1]), dim=-1)
    big = values[..., 0]
    second = values[..., 1] if gu.shape[-1] > 1 else torch.full_like(big, -math.inf)
    top = order[..., :1]
    floor = torch.maximum(gl.gather(-1, best).squeeze(-1), second)  # g = max(l_m, U2) <= U
    low = gl.gather(-1, top).squeeze(-1)
    width = big - low
    slope = torch.where(width > 0, ((big - floor) / torch.where(width > 0, width, 1.0)).clamp(0.0, 1.0), 0.0)
    # the smallest valid constant for this slope (`MaxPool.relaxation`): g - a_t l_t up to rounding
    return top, slope, torch.maximum(big - slope * width, second) - slope * low


Nonlinear = Relu | MaxPool
