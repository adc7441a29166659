"""The L-inf ball: sign steps, clipping, exact LP projections."""

from __future__ import annotations

from typing import Any

import torch

from advlab.attacks.geometry.base import Region, _as_eps, _first_crossing, _LinearProgram, per_example
from advlab.validation import Bounds



class LinfBall(_LinearProgram):
    """L-inf: ||r|| = max_i |r_i|; dual L1; steepest ascent sign(g); projection a clamp."""

    name = "linf"
    start_draws = 1

    def distance(self, r: torch.Tensor) -> torch.Tensor:
        return r.flatten(1).abs().amax(1)

    def dual(self, g: torch.Tensor) -> torch.Tensor:
        return g.flatten(1).abs().sum(1)

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        return g.sign()

    def project_ball(self, x: torch.Tensor, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        e = per_example(eps, x)
        return torch.clamp(z, x - e, x + e)

    def project(self, x: torch.Tensor, z: torch.Tensor, eps: float | torch.Tensor, bounds: Bounds) -> torch.Tensor:
        low, high = self.interval(x, _as_eps(eps, x), bounds)
        return torch.clamp(z, low, high)

    @staticmethod
    def interval(x: torch.Tensor, eps: torch.Tensor, bounds: Bounds) -> tuple[torch.Tensor, torch.Tensor]:
        """The ends of the coordinate-wise intervals whose product is eps-ball ∩ box."""
        e = per_example(eps, x)
        return (x - e).clamp_min(bounds[0]), (x + e).clamp_max(bounds[1])

    def region_cache(self, x: torch.Tensor, eps: torch.Tensor, bounds: Bounds) -> tuple[torch.Tensor, ...]:
        return self.interval(x, eps, bounds)  # a step is then one clamp

    def project_region(self, region: Region, z: torch.Tensor, inplace: bool) -> torch.Tensor:
        low, high = region.cache
        return torch.clamp(z, low, high, out=z if inplace else None)

    def step_region(self, region: Region, z: torch.Tensor, grad: torch.Tensor, alpha: float) -> torch.Tensor:
        low, high = region.cache  # one fused op: z + alpha sign(g), clamped
        return torch.clamp(z.add(grad.sign(), alpha=alpha), low, high)

    def unit_sample(self, n: int, u: torch.Tensor) -> torch.Tensor:
        return 2 * u[:, :n] - 1

    def diameter(self, width: float, n: int) -> float:
        return width

    def noise(self, even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
        return 2 * even - 1  # uniform in [-1, 1]^n

    def ascent(self, g: torch.Tensor, step: torch.Tensor, sparsity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return step, g.sign()

    def halfspace_step(self, a: torch.Tensor, m: torch.Tensor, cap: torch.Tensor) -> torch.Tensor:
        alpha = a.abs()  # every coordinate moves by min(eps, cap_i): the smallest eps that reaches m
        eps = _first_crossing(alpha, alpha * cap, m)
        return torch.sign(a) * torch.minimum(eps.unsqueeze(1), cap)

    def lp_form(self, a: Any, m: Any, low: Any, high: Any) -> tuple[Any, Any, Any, list[tuple[float | None, float | None]]]:
        """Variables (r, t): minimise t with -t <= r_i <= t."""
        import numpy as np
        from scipy import sparse

        k, d = a.shape
        eye, ones = sparse.identity(d, format="csr"), sparse.csr_matrix(np.ones((d, 1)))
        rows = sparse.csr_matrix(np.hstack([-a, np.zeros((k, 1))]))
        a_ub = sparse.vstack([sparse.hstack([eye, -ones]), sparse.hstack([-eye, -ones]), rows])
        b_ub = np.concatenate([np.zeros(2 * d), -m])
        return np.r_[np.zeros(d), 1.0], a_ub, b_ub, list(zip(low, high, strict=True)) + [(0.0, None)]

    def lp_point(self, solution: Any, d: int) -> Any:
        return solution[:d]
