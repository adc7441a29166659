"""The L2 ball: normalised gradient steps, radial projection, uniform sampling."""

from __future__ import annotations

import math

import torch

from advlab.attacks.geometry.base import Geometry, _first_crossing, _gaussian, _safe, per_example
from advlab.errors import SolverError
from advlab.validation import Bounds



class L2Ball(Geometry):
    """L2: ||r|| = sqrt(sum r_i^2); self-dual; steepest ascent g / ||g||; radial projection."""

    name = "l2"
    start_draws = 2

    def distance(self, r: torch.Tensor) -> torch.Tensor:
        return r.flatten(1).norm(dim=1)

    def dual(self, g: torch.Tensor) -> torch.Tensor:
        return g.flatten(1).norm(dim=1)

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        return self.scaled(g)

    def project_ball(self, x: torch.Tensor, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        delta = z - x
        length = delta.flatten(1).norm(dim=1)
        scale = (eps / _safe(length)).clamp_max(1.0)
        return torch.where(per_example(length > eps, z), x + delta * per_example(scale, z), z)

    def unit_sample(self, n: int, u: torch.Tensor) -> torch.Tensor:
        # Gaussian direction (Box-Muller on pairs of uniforms), radius U^(1/n)
        pairs = u[:, : 2 * ((n + 1) // 2)].view(u.shape[0], -1, 2)
        radius = (-2 * pairs[..., 0].log()).sqrt()
        angle = 2 * math.pi * pairs[..., 1]
        gauss = torch.stack([radius * angle.cos(), radius * angle.sin()], dim=2).flatten(1)[:, :n]
        direction = gauss / _safe(gauss.norm(dim=1, keepdim=True))
        return direction * u[:, -1:].pow(1.0 / n)

    def diameter(self, width: float, n: int) -> float:
        return width * math.sqrt(n)

    def noise(self, even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
        return _gaussian(even, odd)

    def ascent(self, g: torch.Tensor, step: torch.Tensor, sparsity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return step / (g.flatten(1).norm(dim=1) + 1e-12), g

    def halfspace_step(self, a: torch.Tensor, m: torch.Tensor, cap: torch.Tensor) -> torch.Tensor:
        alpha = a.abs()  # r_i = min(t |a_i|, cap_i) (KKT), the smallest t that reaches m
        t = _first_crossing(alpha * alpha, alpha * cap, m)
        return torch.sign(a) * torch.minimum(t.unsqueeze(1) * alpha, cap)

    def min_norm_polytope(
        self, x: torch.Tensor, a: torch.Tensor, m: torch.Tensor, bounds: Bounds, *, iterations: int = 200
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched projected Newton on the dual.

        Dual: maximise g(lam) = lam.m - sum_i phi_i((A^T lam)_i) over lam >= 0, where
        phi_i(v) = max_{r_i in box} (v r_i - r_i^2 / 2) and r(lam) = clip(A^T lam) is the primal
        point. g is concave and piecewise quadratic with gradient m - A r(lam) and Hessian
        -A D A^T (D: coordinates not at a bound), so Newton steps on the multipliers not held at 0
        (Bertsekas 1982) with a projected Armijo search end exactly on the optimum. Each example
        finishes with a certificate: r(lam) feasible (optimal by duality), or lam a Farkas
        witness that no point of the box satisfies A r >= m.
        """
        low, high = bounds[0] - x, bounds[1] - x
        scale = a.abs().sum(-1).amax(1) * max(abs(bounds[0]), abs(bounds[1])) + m.abs().amax(1) + 1.0
        tol = 1e-12 * scale

        def primal(lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            v = torch.einsum("nk,nkd->nd", lam, a)
            return v, torch.minimum(torch.maximum(v, low), high)

        def dual(lam: torch.Tensor) -> torch.Tensor:
            v, r = primal(lam)
            return (lam * m).sum(1) - (v * r - 0.5 * r * r).sum(1)

        def certificates(lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            v, r = primal(lam)
            residual = m - torch.einsum("nkd,nd->nk", a, r)
            feasible = residual.amax(1) <= tol
            best_in_box = torch.maximum(v * low, v * high).sum(1)  # max of lam.A r over the box
            infeasible = (lam * m).sum(1) - best_in_box > tol * lam.sum(1).clamp_min(1.0)
            return residual, feasible, infeasible

        lam = torch.zeros_like(m)
        eye = torch.eye(m.shape[1], dtype=m.dtype, device=m.device)
        for _ in range(iterations):
            grad, feasible, infeasible = certificates(lam)
            projected = torch.where(lam > 0, grad.abs(), grad.clamp_min(0.0)).amax(1)
            done = (feasible & (projected <= tol)) | infeasible
            if bool(done.all()):
                break
            v, _ = primal(lam)
            free = ((v > low) & (v < high)).to(m.dtype)
            hessian = torch.einsum("nkd,nd,njd->nkj", a, free, a)
            moving = ~((lam <= 0) & (grad <= 0))
            pair = moving.unsqueeze(2) & moving.unsqueeze(1)
            ridge = 1e-13 * hessian.diagonal(dim1=1, dim2=2).sum(1).clamp_min(1.0)
            hessian = torch.where(pair, hessian, 0.0) + eye * torch.where(moving, ridge.unsqueeze(1), 1.0).unsqueeze(2)
            step = torch.linalg.solve(hessian, torch.where(moving, grad, 0.0).unsqueeze(2)).squeeze(2)
            step = torch.where(done.unsqueeze(1), 0.0, step)
            start = dual(lam)
            alpha = torch.ones_like(start)
            for _ in range(60):  # projected Armijo backtracking, per example
                candidate = (lam + alpha.unsqueeze(1) * step).clamp_min(0.0)
                ok = dual(candidate) >= start + 1e-4 * (grad * (candidate - lam)).sum(1)
                if bool(ok.all()):
                    break
                alpha = torch.where(ok, alpha, 0.5 * alpha)
            lam = torch.where(ok.unsqueeze(1), candidate, lam)
        _, feasible, infeasible = certificates(lam)
        unresolved = (~feasible & ~infeasible).nonzero().flatten()
        if unresolved.numel():
            raise SolverError(
                f"the exact L2 solver reached no certificate for {unresolved.numel()} example(s) "
                f"(first: index {int(unresolved[0])}) in {iterations} Newton steps"
            )
        _, r = primal(lam)
        r = torch.where(feasible.unsqueeze(1), r, 0.0)
        return torch.where(feasible, r.norm(dim=1), torch.inf), r, feasible
