"""Minimal-norm adversarial examples by bisection over eps with PGD (L-inf or L2).

Per example, keep a bracket [low, high] on the smallest eps at which PGD finds an adversarial
example, high always being the norm of one found (so the reported distance is achieved):

1. high = the distance of DeepFool's result (Moosavi-Dezfooli et al. 2016) when it succeeds,
   else the largest distance the box allows (the whole box is then tested first);
2. repeat: eps = (low + high) / 2; run PGD (Madry et al. 2017) on the logit margin inside the
   eps-ball, first from the best example found so far projected into the ball, then from
   `restarts - 1` random starts, each stopping at the first adversarial iterate; success sets
   high to the norm of that iterate (<= eps), failure sets low = eps; until
   high - low <= rtol * high or `search_steps` rounds.

The bracket's low end is where PGD failed, not a certified lower bound.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from advlab.attacks.base import Attack, Bounds, Perturbed, TargetSpec, check_positive
from advlab.attacks.deepfool import DeepFool
from advlab.attacks.iterative import PGD, Ball, check_count, check_norm, per_example
from advlab.attacks.result import AttackResult


class MinPGD(Attack):
    """Smallest-eps PGD adversarial example per input, found by bisection."""

    name = "minpgd"

    def __init__(
        self,
        model: nn.Module,
        *,
        norm: str = "linf",
        steps: int = 100,
        restarts: int = 3,
        search_steps: int = 20,
        rtol: float = 1e-3,
        step_fraction: float = 0.05,
        candidates: int = 10,
        bounds: Bounds = (0.0, 1.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(model, bounds=bounds, **kwargs)
        self.norm = check_norm(norm)
        self.steps = check_count("steps", steps)
        self.restarts = check_count("restarts", restarts)
        self.search_steps = check_count("search_steps", search_steps)
        self.rtol = check_positive("rtol", rtol)
        self.step_fraction = check_positive("step_fraction", step_fraction)
        self.candidates = check_count("candidates", candidates, minimum=2)
        self.pgd = PGD(model, eps=0.0, norm=norm, steps=steps, loss="margin", early_exit=True, bounds=bounds, seed=self.seed)
        self.deepfool = DeepFool(model, norm=norm, bounds=bounds)

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "norm": self.norm,
            "steps": self.steps,
            "restarts": self.restarts,
            "search_steps": self.search_steps,
            "rtol": self.rtol,
            "step_fraction": self.step_fraction,
            "candidates": self.candidates,
        }

    def __call__(self, x: Any, y: Any, *, targets: TargetSpec = None) -> AttackResult:
        self.pgd.reset_generator()
        return super().__call__(x, y, targets=targets)

    def distance(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r = (x_adv - x).flatten(1)
        return r.abs().amax(1) if self.norm == "linf" else r.norm(dim=1)

    def _perturb(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool) -> Perturbed:
        width = self.bounds[1] - self.bounds[0]
        cap = width if self.norm == "linf" else width * math.sqrt(x[0].numel())
        start = self.clip(self.deepfool._perturb(x, goal, targeted).x_adv)
        with torch.no_grad():
            clean = self.logits(x)
        k = 0 if targeted else min(self.candidates, clean.shape[1]) - 1
        rivals = clean.scatter(1, goal.unsqueeze(1), float("-inf")).topk(k, dim=1).indices
        with torch.no_grad():
            found = self.is_adversarial(self.logits(start), goal, targeted)
        best = torch.where(per_example(found, x), start, x)
        high = torch.where(found, self.distance(start, x), torch.full_like(found, cap, dtype=x.dtype))
        low = torch.zeros_like(high)
        for _ in range(self.search_steps):
            todo = (high - low > self.rtol * high).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            eps = torch.where(found[todo], (low[todo] + high[todo]) / 2, high[todo])
            ball = Ball(x[todo], eps, self.step_fraction * eps, self.norm, self.bounds)
            candidate, success = self.search(ball, ball.project(best[todo]), goal[todo], rivals[todo], targeted)
            distance = self.distance(candidate, x[todo])
            best[todo] = torch.where(per_example(success, candidate), candidate, best[todo])
            high[todo] = torch.where(success, distance, high[todo])
            low[todo] = torch.where(success, low[todo], eps)
            found[todo] |= success
        return Perturbed(best)

    def search(
        self, ball: Ball, warm: torch.Tensor, goal: torch.Tensor, rivals: torch.Tensor, targeted: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """PGD runs for the examples still not fooled: from the warm start on the margin to the
        goal, then from x towards each rival class, then from random starts."""
        result = warm.clone()
        success = torch.zeros(warm.shape[0], dtype=torch.bool, device=warm.device)
        todo = torch.arange(warm.shape[0], device=warm.device)
        runs = [("warm", None)] + [("rival", k) for k in range(rivals.shape[1])] + [("random", None)] * (self.restarts - 1)
        for kind, k in runs:
            sub = ball.take(todo)
            if kind == "warm":
                candidate, _ = self.pgd.run(sub, warm[todo], goal[todo], targeted)
            elif kind == "rival":
                candidate, _ = self.pgd.run(sub, sub.x, rivals[todo, k], True)
            else:
                candidate, _ = self.pgd.run(sub, sub.sample(self.pgd.generator(warm.device)), goal[todo], targeted)
            with torch.no_grad():
                hit = self.is_adversarial(self.logits(candidate), goal[todo], targeted)
            result[todo] = torch.where(per_example(hit, candidate), candidate, result[todo])
            success[todo] = hit
            todo = todo[~hit]
            if todo.numel() == 0:
                break
        return result, success
