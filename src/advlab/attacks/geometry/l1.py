"""The L1 ball (Croce & Hein 2021): sparse steps and the exact projection onto the L1 ball ∩ box."""

from __future__ import annotations

import math
from typing import Any

import torch

from advlab.attacks.geometry.base import Region, _as_eps, _gaussian, _LinearProgram, per_example
from advlab.validation import Bounds



class L1Ball(_LinearProgram):
    """L1: ||r|| = sum_i |r_i|; dual L-inf; steepest ascent along the largest |g_i|; projection
    onto ball ∩ box exact (Croce & Hein 2021, Lemma 1); APGD's sparse step with adaptive sparsity."""

    name = "l1"
    start_draws = 2
    apgd_alpha = 1.0
    momentum = False
    adaptive_sparsity = True

    def distance(self, r: torch.Tensor) -> torch.Tensor:
        return r.flatten(1).abs().sum(1)

    def dual(self, g: torch.Tensor) -> torch.Tensor:
        return g.flatten(1).abs().amax(1)

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        """sign(g_i) e_i at the first i of largest |g_i| (0 where g = 0)."""
        flat = g.flatten(1)
        top = flat.abs().argmax(1, keepdim=True)
        return torch.zeros_like(flat).scatter(1, top, flat.gather(1, top).sign()).view_as(g)

    def project_ball(self, x: torch.Tensor, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        delta = (z - x).flatten(1)
        inside = per_example(delta.abs().sum(1) <= eps, z)
        return torch.where(inside, z, x + _clipped_shrink(delta, torch.full_like(delta, math.inf), eps).view_as(x))

    def project(self, x: torch.Tensor, z: torch.Tensor, eps: float | torch.Tensor, bounds: Bounds) -> torch.Tensor:
        """The Euclidean projection onto ball ∩ box: r_i = clip(shrink(z_i - x_i, lam), box); a
        feasible z is returned bit for bit."""
        eps = _as_eps(eps, x)
        delta, flat = (z - x).flatten(1), x.flatten(1)
        cap = torch.where(delta > 0, bounds[1] - flat, flat - bounds[0]).clamp_min(0.0)
        projected = (x + _clipped_shrink(delta, cap, eps).view_as(x)).clamp(bounds[0], bounds[1])
        feasible = (delta.abs().sum(1) <= eps) & ((z >= bounds[0]) & (z <= bounds[1])).flatten(1).all(1)
        return torch.where(per_example(feasible, z), z, projected)

    def project_region(self, region: Region, z: torch.Tensor, inplace: bool) -> torch.Tensor:
        return self.project(region.x, z, region.eps, region.bounds)

    def unit_sample(self, n: int, u: torch.Tensor) -> torch.Tensor:
        """Signs times (E_1..E_n) / (E_1 + ... + E_{n+1}), E_i ~ Exp(1): uniform in the cross-polytope.
        |2u - 1| is uniform and independent of sign(2u - 1), so one uniform gives both."""
        centred = 2 * u[:, :n] - 1
        tiny = torch.finfo(u.dtype).tiny
        exponential = -centred.abs().clamp_min(tiny).log()
        last = -u[:, n : n + 1].clamp_min(tiny).log()
        return centred.sign() * exponential / (exponential.sum(1, keepdim=True) + last)

    def diameter(self, width: float, n: int) -> float:
        return width * n

    def noise(self, even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
        return _gaussian(even, odd)

    def start(self, x: torch.Tensor, t: torch.Tensor, eps: float, bounds: Bounds) -> torch.Tensor:
        """x + t projected onto ball ∩ box (the reference code's L1 start: t standard normal)."""
        return self.project(x, x + t, eps, bounds)

    def ascent(self, g: torch.Tensor, step: torch.Tensor, sparsity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sign(g) on the coordinates whose |g_i| reaches the (1 - sparsity) quantile, each moved
        by step / (their number): an L1 step of length `step` (Croce & Hein 2021, Sec. 3.1)."""
        flat = g.flatten(1).abs()
        n = flat.shape[1]
        rank = ((1 - sparsity) * n).clamp(0, n - 1).long()
        threshold = flat.sort(1).values.gather(1, rank.unsqueeze(1))
        direction = g.sign() * (g.abs() >= per_example(threshold.squeeze(1), g))
        return step / (direction.abs().flatten(1).sum(1) + 1e-10), direction

    def halfspace_step(self, a: torch.Tensor, m: torch.Tensor, cap: torch.Tensor) -> torch.Tensor:
        """Fill the coordinates in order of decreasing |a_i| up to their caps until a.r = m."""
        alpha = a.abs()
        order = alpha.argsort(dim=1, descending=True, stable=True)
        alpha_s, cap_s = alpha.gather(1, order), cap.gather(1, order)
        gain = (alpha_s * cap_s).cumsum(1)
        j = (gain >= m.unsqueeze(1)).int().argmax(1, keepdim=True)
        gain_prev = torch.where(j > 0, gain.gather(1, (j - 1).clamp_min(0)), 0.0)
        partial = ((m.unsqueeze(1) - gain_prev) / alpha_s.gather(1, j)).minimum(cap_s.gather(1, j))
        index = torch.arange(a.shape[1], device=a.device).unsqueeze(0)
        step = torch.where(index < j, cap_s, torch.where(index == j, partial, 0.0))
        return torch.sign(a) * torch.zeros_like(step).scatter(1, order, step)

    def lp_form(self, a: Any, m: Any, low: Any, high: Any) -> tuple[Any, Any, Any, list[tuple[float | None, float | None]]]:
        """r = p - q with p, q >= 0: minimise sum(p + q)."""
        import numpy as np
        from scipy import sparse

        a_ub = sparse.csr_matrix(np.hstack([-a, a]))
        return np.ones(2 * a.shape[1]), a_ub, -m, [(0.0, h) for h in high] + [(0.0, -lo) for lo in low]

    def lp_point(self, solution: Any, d: int) -> Any:
        return solution[:d] - solution[d:]


def _clipped_shrink(u: torch.Tensor, cap: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Per row, r_i = sign(u_i) min(max(|u_i| - lam, 0), cap_i) for the smallest lam >= 0 with
    ||r||_1 <= eps: the projection of u onto the L1 ball ∩ {-cap <= r sign(u) <= cap} (caps >= 0).

    S(lam) = sum_i min(max(|u_i| - lam, 0), cap_i) is continuous, piecewise linear and
    non-increasing, with breakpoints |u_i| (where i starts moving) and |u_i| - cap_i (where it
    saturates); walking the sorted breakpoints downwards from max |u_i| (S = 0) gives S at each,
    and lam is solved for on the linear piece that crosses eps.
    """
    size = u.abs()
    moved = torch.minimum(size, cap)
    inside = moved.sum(1) <= eps  # lam = 0: the box clip alone
    breaks = torch.cat([size, (size - cap).clamp_min(0.0)], dim=1)
    slope_change = torch.cat([torch.ones_like(size), -torch.ones_like(size)], dim=1)
    breaks, order = breaks.sort(dim=1, descending=True)
    slope = slope_change.gather(1, order).cumsum(1)  # -dS/dlam just below each breakpoint
    gap = torch.cat([breaks[:, :-1] - breaks[:, 1:], torch.zeros_like(breaks[:, :1])], dim=1)
    total = torch.cat([torch.zeros_like(breaks[:, :1]), (slope * gap).cumsum(1)[:, :-1]], dim=1)  # S at each breakpoint
    j = (total >= eps.unsqueeze(1)).int().argmax(1, keepdim=True).clamp_min(1)  # first breakpoint at or past eps
    lam = breaks.gather(1, j - 1) - (eps.unsqueeze(1) - total.gather(1, j - 1)) / slope.gather(1, j - 1).clamp_min(1)
    lam = torch.where(inside.unsqueeze(1), 0.0, lam.clamp_min(0.0))
    return u.sign() * torch.minimum((size - lam).clamp_min(0.0), cap)
