"""Minimal-norm adversarial examples by bisection over eps with projected ascent (L-inf or L2).

Per example, keep a bracket [low, high] on the smallest eps at which the search below finds
an adversarial example; high is always the norm of one found, so the reported distance is
achieved:

1. high = the distance of DeepFool's result (Moosavi-Dezfooli et al. 2016) when it succeeds,
   else the largest distance the box allows (the whole box is then tested first);
2. repeat: eps = (low + high) / 2 and search the eps-ball ∩ box; success sets high to the
   norm of the point found (<= eps), failure sets low = eps; until high - low <= rtol * high
   or `search_steps` rounds.

The search at eps is projected ascent (Madry et al. 2017's PGD) on logit differences, each run
stopping per example at its first adversarial iterate, run after run for the examples not yet
fooled:

- from the best example so far projected into the ball, on the margin to the goal
  (Carlini & Wagner 2017), with gradient steps scaled so that the largest coordinate moves
  alpha: the exact optimum often has coordinates strictly inside the ball, where sign steps
  only oscillate;
- untargeted, on z_k - z_y for each of the `candidates - 1` classes k with the highest clean
  logits in turn (the per-class problems an exact MILP solves: the nearest class is often not
  the one the margin heads for); targeted, on the margin to the target; from x with sign
  steps (the L-inf steepest ascent), from x with scaled steps, then from `restarts` points
  drawn uniformly from the ball with scaled steps (random draw number d of an example is a
  function of (seed, example index, d) only: `geometry.random_start`).

Step lengths follow alpha_t = fraction * eps * (1 + cos(pi t / steps)) / 2; under L2 every step
is along g / ||g||_2. The bracket's low end is where the search failed, not a certified lower
bound. Targeted L-inf searches are weaker where several classes tie with the target at the
optimum (the margin is then a minimum of several pieces and ascent zigzags between them).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from advlab.attacks.base import Attack, Perturbed
from advlab.attacks.deepfool import DeepFool
from advlab.attacks.geometry import Region, geometry, per_example, random_start
from advlab.attacks.losses import margin, top_rivals
from advlab.attacks.search import ActiveSet
from advlab.validation import Bounds, check_count, check_norm, check_positive

SCALED_STEP = 0.5  # initial step (a fraction of eps) of the runs with scaled gradient steps
SIGN_STEP = 0.1  # initial step (a fraction of eps) of the runs with sign steps


class MinPGD(Attack):
    """Smallest-eps adversarial example per input, by bisection over eps of margin PGD."""

    name = "minpgd"
    norms = ("linf", "l2")

    def __init__(
        self,
        model: nn.Module,
        *,
        norm: str = "linf",
        steps: int = 100,
        search_steps: int = 20,
        rtol: float = 1e-4,
        candidates: int = 10,
        restarts: int = 1,
        bounds: Bounds = (0.0, 1.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(model, bounds=bounds, **kwargs)
        self.geometry = geometry(check_norm(norm, self.norms))
        self.norm = norm
        self.steps = check_count("steps", steps)
        self.search_steps = check_count("search_steps", search_steps)
        self.rtol = check_positive("rtol", rtol)
        self.candidates = check_count("candidates", candidates, minimum=2)
        self.restarts = check_count("restarts", restarts, minimum=0)
        self.deepfool = DeepFool(model, norm=norm, bounds=bounds)

    def _perturb(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool, indices: torch.Tensor) -> Perturbed:
        cap = self.geometry.diameter(self.bounds[1] - self.bounds[0], x[0].numel())
        start, clean_logits = self.deepfool.walk(x, goal, targeted)
        with torch.no_grad():
            found = self.is_adversarial(self.logits(start), goal, targeted)
        rivals = goal.unsqueeze(1) if targeted else top_rivals(clean_logits, goal, self.candidates - 1)
        best = torch.where(per_example(found, x), start, x)
        high = torch.where(found, self.geometry.distance(start - x), torch.full_like(found, cap, dtype=x.dtype))
        low = torch.zeros_like(high)
        for round_ in self.rounds(self.search_steps, "bisection"):
            todo = (high - low > self.rtol * high).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            eps = torch.where(found[todo], (low[todo] + high[todo]) / 2, high[todo])
            region = Region(self.geometry, x[todo], eps, self.bounds)
            draws = (round_ * self.restarts, indices[todo.cpu()])
            candidate, success = self.search(region, region.project(best[todo]), goal[todo], rivals[todo], targeted, draws)
            best[todo] = torch.where(per_example(success, candidate), candidate, best[todo])
            high[todo] = torch.where(success, self.geometry.distance(candidate - x[todo]), high[todo])
            low[todo] = torch.where(success, low[todo], eps)
            found[todo] |= success
        return Perturbed(best, clean_logits=clean_logits)

    def search(
        self, region: Region, warm: torch.Tensor, goal: torch.Tensor, rivals: torch.Tensor, targeted: bool,
        draws: tuple[int, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The runs at one eps per example (see the module docstring): points and success.

        draws: (the first random draw number of this round, the examples' global indices).
        """
        result = warm.clone()
        success = torch.zeros(warm.shape[0], dtype=torch.bool, device=warm.device)
        todo = torch.arange(warm.shape[0], device=warm.device)
        k_rivals = rivals.shape[1]
        first_draw, indices = draws
        starts = [(None, SIGN_STEP, True), (None, SCALED_STEP, False)]
        starts += [(first_draw + restart, SCALED_STEP, False) for restart in range(self.restarts)]
        runs = [(warm, None, SCALED_STEP, False)]  # refine the best point so far
        runs += [(start, k, fraction, sign) for start, fraction, sign in starts for k in range(k_rivals)]
        for start, k, fraction, sign in runs:
            sub = region.take(todo)
            toward = None if k is None else rivals[todo, k]
            if start is None:
                z = sub.x
            elif isinstance(start, int):  # random draw number start * K + k of each example
                z = sub.project(random_start(self.geometry, sub.x, sub.eps, self.seed, indices[todo.cpu()], start * k_rivals + k))
            else:
                z = start[todo]
            candidate = self.ascend(sub, z, goal[todo], targeted, toward, fraction, sign=sign)
            with torch.no_grad():
                hit = self.is_adversarial(self.logits(candidate), goal[todo], targeted)
            result[todo] = torch.where(per_example(hit, candidate), candidate, result[todo])
            success[todo] = hit
            todo = todo[~hit]
            if todo.numel() == 0:
                break
        return result, success

    def ascend(
        self,
        region: Region,
        z: torch.Tensor,
        goal: torch.Tensor,
        targeted: bool,
        toward: torch.Tensor | None,
        fraction: float,
        *,
        sign: bool,
    ) -> torch.Tensor:
        """`steps` projected ascent steps on the margin to the goal (or towards the classes
        `toward`); each example stops at its first adversarial iterate and keeps it. Steps are
        along the steepest-ascent direction (`sign`) or the gradient scaled to unit norm."""
        active = ActiveSet(z.clone())
        for step in range(self.steps):
            z = z.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = self.logits(z)
                if toward is None or targeted:
                    value = margin(logits, goal, targeted)
                else:  # z_k - z_y: the MILP's per-class constraint
                    value = logits.gather(1, toward[:, None]) - logits.gather(1, goal[:, None])
                (grad,) = torch.autograd.grad(value.sum(), z)
            z = z.detach()
            keep = active.retire(self.is_adversarial(logits.detach(), goal, targeted), z)
            if keep is not None:
                if active.empty:
                    return active.out
                z, grad, goal, region = z[keep], grad[keep], goal[keep], region.take(keep)
                toward = None if toward is None else toward[keep]
            direction = self.geometry.direction(grad) if sign else self.geometry.scaled(grad)
            alpha = fraction * region.eps * (1 + math.cos(math.pi * step / self.steps)) / 2
            z = region.project(z + per_example(alpha, z) * direction)
        return active.finish(z)
