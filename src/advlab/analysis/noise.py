"""Random perturbations to compare adversarial ones with (Szegedy et al. 2013, Sec. 4.2).

The paper contrasts its adversarial examples with Gaussian noise: `gaussian_noise` adds
N(0, stddev^2) to every pixel, unclipped as in Table 2's noise rows (whose distortion column,
sqrt(mean r^2), reads the stddev), or clipped to the box with `bounds`. To compare at
exactly the same size, `perturb_to_norm` moves each example along a direction d to the point
clip(x + t d) whose distance from x is a given L2 norm; `equal_norm_noise` does so along a
Gaussian or a uniform direction, and the magnified perturbations of Table 4 are
`perturb_to_norm` along the adversarial perturbation itself.
"""

from __future__ import annotations

import torch

from advlab.errors import InputError
from advlab.validation import Bounds

NOISE_KINDS = ("gaussian", "uniform")
BISECTION_STEPS = 64


def gaussian_noise(
    x: torch.Tensor, stddev: float, generator: torch.Generator, bounds: Bounds | None = None
) -> torch.Tensor:
    """x + N(0, stddev^2) per pixel, clipped to `bounds` when given (None: unclipped, so the
    distortion's expectation is the stddev); drawn on the CPU, so it does not depend on the device."""
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    noisy = x + stddev * noise
    return noisy if bounds is None else noisy.clamp(bounds[0], bounds[1])


def perturb_to_norm(
    x: torch.Tensor, direction: torch.Tensor, norms: torch.Tensor, bounds: Bounds = (0.0, 1.0)
) -> torch.Tensor:
    """clip(x + t d) with ||clip(x + t d) - x||_2 = norms, t >= 0 found per example.

    ||clip(x + t d) - x|| is continuous and non-decreasing in t and at most t ||d||, so t lies
    between norm / ||d|| and the t at which every moving pixel is at a bound. Those two can be
    hundreds of orders of magnitude apart (an adversarial r has entries near 0), so t is
    bisected geometrically, 64 steps in float64. A norm the box cannot reach gives the farthest point.
    """
    if x.shape != direction.shape or norms.shape != x.shape[:1]:
        raise InputError(f"x {tuple(x.shape)}, direction {tuple(direction.shape)} and norms {tuple(norms.shape)} do not match")
    flat, d = x.flatten(1).double(), direction.flatten(1).double()
    target = norms.double().unsqueeze(1)
    cap = torch.where(d > 0, bounds[1] - flat, flat - bounds[0])  # room before the box in d's direction
    saturate = torch.where(d != 0, cap / d.abs().clamp_min(1e-300), torch.zeros_like(cap)).amax(1, keepdim=True)

    def length(t: torch.Tensor) -> torch.Tensor:
        return ((flat + t * d).clamp(bounds[0], bounds[1]) - flat).norm(dim=1, keepdim=True)

    low = (target / d.norm(dim=1, keepdim=True).clamp_min(1e-300)).minimum(saturate).clamp_min(1e-300)
    high = saturate.clamp_min(1e-300)
    for _ in range(BISECTION_STEPS):
        middle = low.sqrt() * high.sqrt()
        short = length(middle) < target
        low, high = torch.where(short, middle, low), torch.where(short, high, middle)
    high = torch.where((target > 0) & (saturate > 0), high, torch.zeros_like(high))
    return (flat + high * d).clamp(bounds[0], bounds[1]).reshape(x.shape).to(x.dtype)


def equal_norm_noise(
    x: torch.Tensor, norms: torch.Tensor, kind: str, generator: torch.Generator, bounds: Bounds = (0.0, 1.0)
) -> torch.Tensor:
    """Random perturbations of exactly the L2 norms `norms` (after the box): `kind` is the law
    of the direction, "gaussian" (N(0, 1) per pixel) or "uniform" (U(-1, 1) per pixel)."""
    if kind not in NOISE_KINDS:
        raise InputError(f"noise kind must be one of {', '.join(NOISE_KINDS)}, got {kind!r}")
    if kind == "gaussian":
        direction = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    else:
        direction = 2 * torch.rand(x.shape, generator=generator, dtype=x.dtype) - 1
    return perturb_to_norm(x, direction.to(x.device), norms, bounds)
