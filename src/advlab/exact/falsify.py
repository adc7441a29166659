"""Looking for a counterexample to a Property with gradient steps that keep moving where the
outputs saturate.

The objective is the property's slack s(x) = min_i max_r (C_ir f(x) - d_ir): x violates the
property iff s(x) <= 0. Plain PGD on s stalls on networks whose outputs saturate (near one-hot
vectors): s is flat there and its gradient is zero. So, per restart, `falsify` uses one of

- "slack": sign-gradient steps on s itself;
- "soft": on the temperature-scaled smooth version T log-sum-exp over the rows and
  -T log-sum-exp(-. / T) over the disjuncts, with T = 0.1 times the spread of the outputs:
  every row and every disjunct contributes gradient, not only the active one;

and, where a coordinate's gradient is exactly zero, a random +-step instead of none. Starts:
the box's centre, corners the caller gives (e.g. the inputs at which bound propagation attains
its bounds), random corners and uniform points, all drawn from `seed` (CPU generator), so the
search is the same in any process. Steps shrink linearly from a tenth of the box's width.

Every candidate is re-checked by running the float64 model on the point (inside the box);
only a confirmed point is returned.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from advlab.formats.vnnlib import Property

TEMPERATURE = 0.1  # of the outputs' spread, for the "soft" objective


def _outputs(model64: nn.Module, x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    return model64(x.reshape(len(x), *shape)).reshape(len(x), -1)


def _soft_slack(prop: Property, y: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    per = [temperature * torch.logsumexp(((y @ c.T) - d) / temperature, 1) for c, d in prop.disjuncts if len(d)]
    return -temperature * torch.logsumexp(-torch.stack(per, 1) / temperature, 1)


def confirmed(model64: nn.Module, prop: Property, points: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor | None:
    """The first of `points` (P, n) that lies in the box and violates the property when the
    float64 model runs on it, or None."""
    points = points.double()
    with torch.no_grad():
        ok = prop.inside(points) & prop.violated(_outputs(model64, points, shape))
    index = ok.nonzero().flatten()
    return points[int(index[0])].clone() if len(index) else None


def starts(prop: Property, count: int, generator: torch.Generator, corners: torch.Tensor | None = None) -> torch.Tensor:
    """Centre, the given corners, then alternately random corners and uniform points: (count, n)."""
    lo, hi = prop.lower, prop.upper
    first = [((lo + hi) / 2).unsqueeze(0)] + ([corners.double().reshape(-1, lo.numel())] if corners is not None else [])
    given = torch.cat(first)[:count]
    rest = count - len(given)
    u = torch.rand(rest, lo.numel(), generator=generator, dtype=torch.float64)
    u[::2] = (u[::2] > 0.5).double()
    return torch.cat([given, lo + (hi - lo) * u])


def falsify(
    model64: nn.Module, prop: Property, shape: tuple[int, ...], *, steps: int = 50, restarts: int = 16,
    seed: int = 0, corners: torch.Tensor | None = None, deadline: float = float("inf"),
) -> torch.Tensor | None:
    """A confirmed counterexample (n,) float64, or None (module docstring). `model64` is a
    float64 model in eval mode; `shape` its per-example input shape."""
    generator = torch.Generator().manual_seed(seed)
    lo, hi = prop.lower, prop.upper
    x = starts(prop, restarts, generator, corners)
    found = confirmed(model64, prop, x, shape)
    if found is not None or steps == 0 or not any(len(d) for _, d in prop.disjuncts):
        return found
    soft = torch.arange(len(x)) % 2 == 1  # every other restart on the smooth objective
    width = hi - lo
    with torch.no_grad():
        spread = _outputs(model64, x, shape).std().clamp_min(1e-6)
    temperature = TEMPERATURE * spread
    for step in range(steps):
        if time.perf_counter() > deadline:
            return None
        x = x.detach().requires_grad_(True)
        y = _outputs(model64, x, shape)
        hard = prop.slack(y)
        objective = torch.where(soft, _soft_slack(prop, y, temperature), hard)
        (grad,) = torch.autograd.grad(objective.sum(), x)
        with torch.no_grad():
            hit = (hard <= 0).nonzero().flatten()
            if len(hit) and (point := confirmed(model64, prop, x[hit], shape)) is not None:
                return point
            direction = -grad.sign()
            random = torch.randint(0, 2, x.shape, generator=generator).double() * 2 - 1
            direction = torch.where(direction == 0, random, direction)
            size = width * (0.1 * (1 - step / steps) + 0.001)
            x = torch.minimum(torch.maximum(x + size * direction, lo), hi)
    return confirmed(model64, prop, x.detach(), shape)
