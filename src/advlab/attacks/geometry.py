"""Norm geometry as objects: what an attack needs to know about a norm, in one class per norm.

A `Geometry` gives, for its norm ||.||:

- `distance(r)`: ||r|| per example; `dual(g)`: the dual norm ||g||_* (L-inf <-> L1, L2 <-> L2),
  the rate at which a unit step can raise a linear function with gradient g;
- `direction(g)`: the steepest-ascent unit direction, argmax_{||d|| <= 1} g.d (sign(g) for
  L-inf, g / ||g||_2 for L2; Madry et al. 2017, Sec. 2.1), and `scaled(g)` = g / ||g||, the
  gradient itself rescaled to unit norm (the same as `direction` under L2);
- `project(x, z, eps, bounds)`: a point of the eps-ball around x within the box, from z (exact
  under L-inf, where both sets are coordinate-wise intervals; under L2 the radial projection
  onto the ball, then the clip to the box, which only shortens r; a feasible z is returned bit
  for bit);
- `unit_sample(n, u)`: a point drawn uniformly from the unit ball of R^n from uniforms u;
- `diameter(width, n)`: the largest distance between two points of a box of side `width` in R^n;
- what the attacks need of the norm (Foolbox's LinfBaseGradientDescent / L2BaseGradientDescent
  split, as methods of the norm instead of subclasses of each attack): `noise` and `start` (the
  random start of APGD and FAB), `ascent` (APGD's step), `apgd_alpha`, `momentum` and
  `adaptive_sparsity` (which of APGD's step-size rules applies);
- the exact answers for linear models (`advlab.exact.linear`): `halfspace_step` (the smallest
  r with a.r >= m within the box) and `min_norm_polytope` (several half-spaces at once).

`L1Ball` is the third norm: projection onto the L1 ball ∩ box (exact, by the breakpoints of a
soft threshold clipped to the box; Croce & Hein 2021, "Mind the box: l1-APGD for sparse
adversarial attacks on image classifiers", Lemma 1) and APGD's sparse steepest-ascent step.

`Region` is the feasible set {x' : ||x' - x|| <= eps} ∩ box of a batch (per-example eps), with
`project` and `step`; under L-inf it caches the interval ends, so a step is one clamp.

Random starts (`random_start`) come from a counter-based generator: every number is a function
of (seed, global example index, draw number, coordinate) only, computed on the CPU, so a
start does not depend on the batch size, the batch an example falls in, the device, the
number of threads or (later) the number of processes.

A new norm is one subclass registered in GEOMETRIES.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch

from advlab.attacks.randomness import counter_uniform
from advlab.errors import SolverError
from advlab.validation import Bounds, check_norm


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


def _gaussian(even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
    """Standard normals by Box-Muller, one per pair of uniforms."""
    return torch.sqrt(-2 * torch.log1p(-even)) * torch.cos(2 * math.pi * odd)


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


GEOMETRIES: dict[str, Geometry] = {g.name: g for g in (LinfBall(), L2Ball(), L1Ball())}


def geometry(norm: str) -> Geometry:
    """The registered geometry of `norm` (InputError naming the supported norms otherwise)."""
    return GEOMETRIES[check_norm(norm, tuple(GEOMETRIES))]


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
