"""What every norm's geometry shares: the `Geometry` interface, the per-example helpers, the
feasible `Region` of a batch and counter-based random starts (see `advlab.attacks.geometry`)."""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch

from advlab.attacks.randomness import counter_uniform
from advlab.errors import SolverError
from advlab.validation import Bounds


def per_example(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """View a (N,) tensor so that it broadcasts against a (N, ...) batch."""
    return values.view(-1, *([1] * (like.ndim - 1)))


def _safe(norms: torch.Tensor) -> torch.Tensor:
    return norms.clamp_min(torch.finfo(norms.dtype).tiny)


class Rows:
    """Mixin for a dataclass holding per-example state, one row per example in every field:
    `take(keep)` keeps the rows `keep` of every field (for the early exit of iterative attacks)."""

    def take(self, keep: torch.Tensor):  # type: ignore[no-untyped-def]
        return type(self)(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})  # type: ignore[arg-type]


class Geometry(abc.ABC):
    """The math of one norm (see the module docstring). Stateless; one instance per norm."""

    name: ClassVar[str]
    start_draws: ClassVar[int]  # uniforms per coordinate that `noise` reads (1: `even` only)
    apgd_alpha: ClassVar[float] = 2.0  # APGD's first step size, in units of eps
    momentum: ClassVar[bool] = True  # APGD's heavy-ball step (Croce & Hein 2020, Sec. 3.1)
    adaptive_sparsity: ClassVar[bool] = False  # APGD's step rules of Croce & Hein 2021 (L1)

    @abc.abstractmethod
    def distance(self, r: torch.Tensor) -> torch.Tensor:
        """||r|| per example, r: (N, ...)."""

    @abc.abstractmethod
    def dual(self, g: torch.Tensor) -> torch.Tensor:
        """The dual norm ||g||_* per example."""

    @abc.abstractmethod
    def direction(self, g: torch.Tensor) -> torch.Tensor:
        """The steepest-ascent unit direction argmax_{||d|| <= 1} g.d."""

    def scaled(self, g: torch.Tensor) -> torch.Tensor:
        """g / ||g||: the gradient rescaled to unit norm (0 where g = 0)."""
        return g / per_example(_safe(self.distance(g)), g)

    @abc.abstractmethod
    def project_ball(self, x: torch.Tensor, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """z moved into the eps-ball around x (eps: (N,)); points already inside are unchanged."""

    def project(self, x: torch.Tensor, z: torch.Tensor, eps: float | torch.Tensor, bounds: Bounds) -> torch.Tensor:
        """z moved into the eps-ball around x, then clipped to the box (which keeps it in the ball)."""
        eps = _as_eps(eps, x)
        return self.project_ball(x, z, eps).clamp(bounds[0], bounds[1])

    @abc.abstractmethod
    def unit_sample(self, n: int, u: torch.Tensor) -> torch.Tensor:
        """(N, n) points uniform in the unit ball of R^n, from (N, n + 1 + n % 2) independent uniforms in (0, 1)."""

    @abc.abstractmethod
    def diameter(self, width: float, n: int) -> float:
        """The largest distance between two points of [lo, lo + width]^n."""

    def region(self, x: torch.Tensor, eps: float | torch.Tensor, bounds: Bounds) -> Region:
        """The feasible set of the batch x: eps-ball ∩ box."""
        return Region(self, x, _as_eps(eps, x), bounds)

    # ---- the feasible set of a batch (what `Region` delegates to) ------------------------------
    def region_cache(self, x: torch.Tensor, eps: torch.Tensor, bounds: Bounds) -> tuple[torch.Tensor, ...]:
        """Per-example tensors a region keeps to project faster (none by default)."""
        return ()

    def project_region(self, region: Region, z: torch.Tensor, inplace: bool) -> torch.Tensor:
        """The projection of z onto the region (z's storage may be reused when `inplace`)."""
        return self.project_ball(region.x, z, region.eps).clamp_(region.bounds[0], region.bounds[1])

    def step_region(self, region: Region, z: torch.Tensor, grad: torch.Tensor, alpha: float) -> torch.Tensor:
        """z + alpha direction(grad), projected onto the region."""
        return self.project_region(region, z + alpha * self.direction(grad), False)

    # ---- random starts and ascent steps of APGD and FAB ------------------------------------------
    @abc.abstractmethod
    def noise(self, even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
        """A random perturbation t from uniforms in (0, 1) of x's shape (`odd` is read only when start_draws = 2)."""

    def start(self, x: torch.Tensor, t: torch.Tensor, eps: float, bounds: Bounds) -> torch.Tensor:
        """The start x + eps t / ||t|| on the sphere, clipped to the box (APGD, Sec. 3; FAB's restarts)."""
        return (x + eps * t / per_example(self.distance(t) + 1e-12, x)).clamp(*bounds)

    @abc.abstractmethod
    def ascent(self, g: torch.Tensor, step: torch.Tensor, sparsity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(c, d) with the ascent step x + per_example(c) d of length `step` (N,) along g;
        `sparsity` (N,) is the share of coordinates an L1 step may move (ignored otherwise)."""

    # ---- exact answers for linear models -------------------------------------------------------
    @abc.abstractmethod
    def halfspace_step(self, a: torch.Tensor, m: torch.Tensor, cap: torch.Tensor) -> torch.Tensor:
        """The minimal r (rows, float64) with a.r >= m > 0 and 0 <= sign(a_i) r_i <= cap_i, assumed reachable."""

    @abc.abstractmethod
    def min_norm_polytope(
        self, x: torch.Tensor, a: torch.Tensor, m: torch.Tensor, bounds: Bounds
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """min ||r|| s.t. A r >= m, x + r in the box, per example (x: (N, d), A: (N, k, d), m: (N, k)):
        (distance, inf where infeasible; r; feasible)."""


class _LinearProgram(Geometry):
    """`min_norm_polytope` of a polyhedral norm as one HiGHS LP per example (dual simplex: a
    vertex, accurate to rounding); the norm gives the program (`lp_form`) and reads r back."""

    @abc.abstractmethod
    def lp_form(self, a: Any, m: Any, low: Any, high: Any) -> tuple[Any, Any, Any, list[tuple[float | None, float | None]]]:
        """(cost, A_ub, b_ub, variable bounds) of the LP of one example (numpy / scipy.sparse)."""

    @abc.abstractmethod
    def lp_point(self, solution: Any, d: int) -> Any:
        """r from the LP's solution vector."""

    def min_norm_polytope(
        self, x: torch.Tensor, a: torch.Tensor, m: torch.Tensor, bounds: Bounds
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        import numpy as np
        from scipy.optimize import linprog

        n, _, d = a.shape
        low, high = (bounds[0] - x).cpu().numpy(), (bounds[1] - x).cpu().numpy()
        a_np, m_np = a.cpu().numpy(), m.cpu().numpy()
        options = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}
        r = np.zeros((n, d))
        feasible = np.zeros(n, dtype=bool)
        for i in range(n):  # an LP per example: an infeasible one must not sink the others
            cost, a_ub, b_ub, box = self.lp_form(a_np[i], m_np[i], low[i], high[i])
            result = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=box, method="highs-ds", options=options)
            if result.status == 2:
                continue
            if result.status != 0:
                raise SolverError(f"HiGHS failed on example {i}: {result.message}")
            feasible[i] = True
            r[i] = self.lp_point(result.x, d)
        r_t = torch.from_numpy(r).to(x.device)
        feasible_t = torch.from_numpy(feasible).to(x.device)
        return torch.where(feasible_t, self.distance(r_t), torch.inf), r_t, feasible_t


def _gaussian(even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
    """Standard normals by Box-Muller, one per pair of uniforms."""
    return torch.sqrt(-2 * torch.log1p(-even)) * torch.cos(2 * math.pi * odd)


def _first_crossing(w: torch.Tensor, v: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Row-wise smallest s >= 0 with F(s) = sum_i min(s w_i, v_i) >= m (w, v >= 0, 0 < m <= sum v).

    F is concave, piecewise linear, non-decreasing, with breakpoints beta_i = v_i / w_i; at the
    sorted breakpoints F(beta_j) = sum_{i<=j} v_i + beta_j * sum_{i>j} w_i, and between the last
    breakpoint below m and the first at or above it F is linear, so s is solved for exactly.
    """
    beta = torch.where(w > 0, v / w.clamp_min(torch.finfo(w.dtype).tiny), torch.inf)
    beta, order = beta.sort(dim=1)
    w, v = w.gather(1, order), v.gather(1, order)
    saturated = v.cumsum(1)
    slope = w.sum(1, keepdim=True) - w.cumsum(1)
    value = torch.where(torch.isfinite(beta), saturated + beta.nan_to_num(posinf=0.0) * slope, saturated)
    j = (value >= m.unsqueeze(1)).int().argmax(1, keepdim=True)  # first crossing
    prev = (j - 1).clamp_min(0)
    has_prev = j > 0
    saturated_prev = torch.where(has_prev, saturated.gather(1, prev), 0.0)
    slope_prev = torch.where(has_prev, slope.gather(1, prev), w.sum(1, keepdim=True))
    beta_prev = torch.where(has_prev, beta.gather(1, prev), 0.0)
    s = (m.unsqueeze(1) - saturated_prev) / slope_prev.clamp_min(torch.finfo(w.dtype).tiny)
    return torch.minimum(s.clamp_min(0.0).maximum(beta_prev), beta.gather(1, j)).squeeze(1)


def _as_eps(eps: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if isinstance(eps, torch.Tensor) and eps.ndim == 1:
        return eps
    return torch.full((x.shape[0],), float(eps), dtype=x.dtype, device=x.device)


@dataclass
class Region:
    """The feasible set {x' : ||x' - x|| <= eps} ∩ [lo, hi]^n of a batch, eps per example."""

    geometry: Geometry
    x: torch.Tensor
    eps: torch.Tensor  # (N,)
    bounds: Bounds

    def __post_init__(self) -> None:
        self.cache = self.geometry.region_cache(self.x, self.eps, self.bounds)

    def take(self, index: torch.Tensor) -> Region:
        """The region of the examples `index` (the cached tensors are indexed, not recomputed)."""
        region = Region.__new__(Region)
        region.geometry, region.x, region.eps, region.bounds = self.geometry, self.x[index], self.eps[index], self.bounds
        region.cache = tuple(t[index] for t in self.cache)
        return region

    __getitem__ = take

    def project(self, z: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
        """The projection of z; with `inplace`, z's storage may be reused (under L-inf it is)."""
        return self.geometry.project_region(self, z, inplace)

    def step(self, z: torch.Tensor, grad: torch.Tensor, alpha: float) -> torch.Tensor:
        """One steepest-ascent step of length alpha, projected back into the set."""
        return self.geometry.step_region(self, z, grad, alpha)


def random_start(
    geometry: Geometry, x: torch.Tensor, eps: float | torch.Tensor, seed: int, indices: torch.Tensor, draw: int
) -> torch.Tensor:
    """x + a point drawn uniformly from the eps-ball, per example (not clipped to the box).

    The offset of example i depends only on (seed, indices[i], draw): `indices` are the
    examples' global positions in the attacked set, `draw` numbers the starts of one call
    (0 for the first, then one per restart). The uniforms are computed on the CPU in float64
    and cast to x's dtype and device.
    """
    n = x[0].numel()
    offsets = geometry.unit_sample(n, counter_uniform(seed, indices, draw, n + 1 + n % 2))
    eps = _as_eps(eps, x).to(device="cpu", dtype=torch.float64)
    offsets = (offsets * eps.unsqueeze(1)).to(dtype=x.dtype, device=x.device)
    return x + offsets.view_as(x)
