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
  drawn uniformly from the ball (seeded) with scaled steps.

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

from advlab.attacks.base import Perturbed
from advlab.attacks.deepfool import DeepFool
from advlab.attacks.iterative import BALL_NORMS, Ball, RandomStarts, margin_objective, per_example
from advlab.validation import Bounds, check_count, check_norm, check_positive

SCALED_STEP = 0.5  # initial step (a fraction of eps) of the runs with scaled gradient steps
SIGN_STEP = 0.1  # initial step (a fraction of eps) of the runs with sign steps


class MinPGD(RandomStarts):
    """Smallest-eps adversarial example per input, by bisection over eps of margin PGD."""

    name = "minpgd"

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
        self.norm = check_norm(norm, BALL_NORMS)
        self.steps = check_count("steps", steps)
        self.search_steps = check_count("search_steps", search_steps)
        self.rtol = check_positive("rtol", rtol)
        self.candidates = check_count("candidates", candidates, minimum=2)
        self.restarts = check_count("restarts", restarts, minimum=0)
        self.deepfool = DeepFool(model, norm=norm, bounds=bounds)

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "norm": self.norm,
            "steps": self.steps,
            "search_steps": self.search_steps,
            "rtol": self.rtol,
            "candidates": self.candidates,
            "restarts": self.restarts,
        }

    def distance(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r = (x_adv - x).flatten(1)
        return r.abs().amax(1) if self.norm == "linf" else r.norm(dim=1)

    def _perturb(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool) -> Perturbed:
        width = self.bounds[1] - self.bounds[0]
        cap = width if self.norm == "linf" else width * math.sqrt(x[0].numel())
        start = self.clip(self.deepfool._perturb(x, goal, targeted).x_adv)
        with torch.no_grad():
            clean_logits = self.logits(x)
            found = self.is_adversarial(self.logits(start), goal, targeted)
        if targeted:
            rivals = goal.unsqueeze(1)
        else:
            k = min(self.candidates, clean_logits.shape[1]) - 1
            rivals = clean_logits.scatter(1, goal.unsqueeze(1), float("-inf")).topk(k, dim=1).indices
        best = torch.where(per_example(found, x), start, x)
        high = torch.where(found, self.distance(start, x), torch.full_like(found, cap, dtype=x.dtype))
        low = torch.zeros_like(high)
        for _ in range(self.search_steps):
            todo = (high - low > self.rtol * high).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            eps = torch.where(found[todo], (low[todo] + high[todo]) / 2, high[todo])
            ball = Ball(x[todo], eps, self.norm, self.bounds)
            candidate, success = self.search(ball, ball.project(best[todo]), goal[todo], rivals[todo], targeted)
            best[todo] = torch.where(per_example(success, candidate), candidate, best[todo])
            high[todo] = torch.where(success, self.distance(candidate, x[todo]), high[todo])
            low[todo] = torch.where(success, low[todo], eps)
            found[todo] |= success
        return Perturbed(best, clean_logits=clean_logits)

    def search(
        self, ball: Ball, warm: torch.Tensor, goal: torch.Tensor, rivals: torch.Tensor, targeted: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The runs at one eps per example (see the module docstring): points and success."""
        result = warm.clone()
        success = torch.zeros(warm.shape[0], dtype=torch.bool, device=warm.device)
        todo = torch.arange(warm.shape[0], device=warm.device)
        starts = [(None, SIGN_STEP, True), (None, SCALED_STEP, False)] + [("random", SCALED_STEP, False)] * self.restarts
        runs = [(warm, None, SCALED_STEP, False)]  # refine the best point so far
        runs += [(start, rivals[:, k], fraction, sign) for start, fraction, sign in starts for k in range(rivals.shape[1])]
        for start, toward, fraction, sign in runs:
            sub = ball.take(todo)
            if start is None:
                z = sub.x
            elif isinstance(start, str):
                z = sub.sample(self.generator(warm.device))
            else:
                z = start[todo]
            candidate = self.ascend(sub, z, goal[todo], targeted, None if toward is None else toward[todo], fraction, sign=sign)
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
        ball: Ball,
        z: torch.Tensor,
        goal: torch.Tensor,
        targeted: bool,
        toward: torch.Tensor | None,
        fraction: float,
        *,
        sign: bool,
    ) -> torch.Tensor:
        """`steps` projected ascent steps on the margin to the goal (or towards the classes
        `toward`); each example stops at its first adversarial iterate and keeps it."""
        out = z.clone()
        active = torch.arange(z.shape[0], device=z.device)
        tiny = torch.finfo(z.dtype).tiny
        for step in range(self.steps):
            z = z.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = self.logits(z)
                if toward is None or targeted:
                    value = margin_objective(logits, goal, targeted)
                else:  # z_k - z_y: the MILP's per-class constraint
                    value = logits.gather(1, toward[:, None]) - logits.gather(1, goal[:, None])
                (grad,) = torch.autograd.grad(value.sum(), z)
            z = z.detach()
            robust = ~self.is_adversarial(logits.detach(), goal, targeted)
            keep = robust.nonzero().squeeze(1)
            if keep.numel() < active.numel():
                done = (~robust).nonzero().squeeze(1)
                out[active[done]] = z[done]
                if keep.numel() == 0:
                    return out
                active, z, grad, goal, ball = active[keep], z[keep], grad[keep], goal[keep], ball.take(keep)
                toward = None if toward is None else toward[keep]
            if self.norm == "l2":
                direction = grad / per_example(grad.flatten(1).norm(dim=1).clamp_min(tiny), grad)
            elif sign:
                direction = grad.sign()
            else:
                direction = grad / per_example(grad.flatten(1).abs().amax(1).clamp_min(tiny), grad)
            alpha = fraction * ball.eps * (1 + math.cos(math.pi * step / self.steps)) / 2
            z = ball.project(z + per_example(alpha, z) * direction)
        out[active] = z
        return out
