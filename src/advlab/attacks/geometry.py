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
- `diameter(width, n)`: the largest distance between two points of a box of side `width` in R^n.

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
from typing import ClassVar

import torch

from advlab.attacks.randomness import counter_uniform
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


class LinfBall(Geometry):
    """L-inf: ||r|| = max_i |r_i|; dual L1; steepest ascent sign(g); projection a clamp."""

    name = "linf"

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

    def unit_sample(self, n: int, u: torch.Tensor) -> torch.Tensor:
        return 2 * u[:, :n] - 1

    def diameter(self, width: float, n: int) -> float:
        return width


class L2Ball(Geometry):
    """L2: ||r|| = sqrt(sum r_i^2); self-dual; steepest ascent g / ||g||; radial projection."""

    name = "l2"

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


GEOMETRIES: dict[str, Geometry] = {g.name: g for g in (LinfBall(), L2Ball())}


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
        if isinstance(self.geometry, LinfBall):
            self.low, self.high = LinfBall.interval(self.x, self.eps, self.bounds)

    def take(self, index: torch.Tensor) -> Region:
        """The region of the examples `index` (the cached interval ends are indexed, not recomputed)."""
        region = Region.__new__(Region)
        region.geometry, region.x, region.eps, region.bounds = self.geometry, self.x[index], self.eps[index], self.bounds
        if isinstance(self.geometry, LinfBall):
            region.low, region.high = self.low[index], self.high[index]
        return region

    __getitem__ = take

    def project(self, z: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
        """The projection of z; with `inplace`, z's storage may be reused (under L-inf it is)."""
        if isinstance(self.geometry, LinfBall):
            return torch.clamp(z, self.low, self.high, out=z if inplace else None)
        return self.geometry.project_ball(self.x, z, self.eps).clamp_(self.bounds[0], self.bounds[1])

    def step(self, z: torch.Tensor, grad: torch.Tensor, alpha: float) -> torch.Tensor:
        """One steepest-ascent step of length alpha, projected back into the set."""
        if isinstance(self.geometry, LinfBall):  # one fused op: z + alpha sign(g), clamped
            return torch.clamp(z.add(grad.sign(), alpha=alpha), self.low, self.high)
        return self.project(z + alpha * self.geometry.direction(grad))


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
