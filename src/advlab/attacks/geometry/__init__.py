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

A new norm is one module here holding its subclass, registered in GEOMETRIES (linf.py, l2.py, l1.py).
"""

from advlab.attacks.geometry.base import Geometry, Region, Rows, per_example, random_start
from advlab.attacks.geometry.l1 import L1Ball
from advlab.attacks.geometry.l2 import L2Ball
from advlab.attacks.geometry.linf import LinfBall
from advlab.validation import check_norm

__all__ = ["GEOMETRIES", "Geometry", "L1Ball", "L2Ball", "LinfBall", "Region", "Rows", "geometry", "per_example", "random_start"]

GEOMETRIES: dict[str, Geometry] = {g.name: g for g in (LinfBall(), L2Ball(), L1Ball())}


def geometry(norm: str) -> Geometry:
    """The registered geometry of `norm` (InputError naming the supported norms otherwise)."""
    return GEOMETRIES[check_norm(norm, tuple(GEOMETRIES))]
