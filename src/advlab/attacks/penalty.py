"""The targeted penalty attack: gradient descent on the input (Szegedy et al. 2013, Sec. 4.1,
with Adam in place of L-BFGS).

Per example, minimise over x' in the box [lo, hi]^n

    targeted to t:     CE(f(x'), t)          + lam * ||x' - x||_2^2
    untargeted from y: -log(1 - p_y(x'))     + lam * ||x' - x||_2^2

with Adam (Kingma & Ba 2014) on x', projecting x' onto the box after every step. The
untargeted loss is the cross-entropy of the event "not y" (softplus(z_y - logsumexp_{j != y} z_j)),
rather than -CE(f(x'), y): both grow as p_y falls, but -CE is concave in the margin and keeps
pushing after the label flips, and on a binary model -log(1 - p_y) is exactly the targeted loss. Every iterate
is checked: each example keeps the smallest perturbation that was adversarial at any step.
With `search_steps` > 1, lam is searched per example like L-BFGS's c (`advlab.attacks.penalized`):
success -> larger lam (a shorter perturbation), failure -> smaller lam, then bisection in log lam.

Examples never made adversarial are returned unchanged (x_adv = x) with lam = nan; examples
that are adversarial already are returned unchanged too (distance 0, lam = nan).
`extra["lam"]` is the lam of the run that found the returned point.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks.base import Attack, Perturbed
from advlab.attacks.penalized import WeightSearch, goal_margin
from advlab.errors import InputError
from advlab.validation import Bounds, check_count, check_positive


class Penalty(Attack):
    """Adam on CE + lam * ||r||^2 within the box, keeping the smallest success (L2)."""

    name = "penalty"

    def __init__(
        self,
        model: nn.Module,
        *,
        lam: float = 1.0,
        steps: int = 100,
        lr: float = 0.01,
        search_steps: int = 10,
        bounds: Bounds = (0.0, 1.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(model, bounds=bounds, **kwargs)
        self.lam = check_positive("lam", lam)
        self.lr = check_positive("lr", lr)
        self.steps = check_count("steps", steps)
        self.search_steps = check_count("search_steps", search_steps)

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "lam": self.lam,
            "steps": self.steps,
            "lr": self.lr,
            "search_steps": self.search_steps,
            "norm": "l2",
        }

    def _perturb(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool) -> Perturbed:
        with torch.no_grad():
            clean_logits = self.logits(x)
        already = self.is_adversarial(clean_logits, goal, targeted)
        search = WeightSearch(torch.full_like(clean_logits[:, 0], self.lam))
        best = x.clone()
        best_dist = torch.where(already, 0.0, torch.inf).to(x.dtype)
        best_lam = torch.full_like(best_dist, torch.nan)
        for _ in range(self.search_steps):
            found, dist, success = self._descend(x, goal, targeted, search.weight)
            better = success & (dist < best_dist)
            best = torch.where(better.view(-1, *[1] * (x.ndim - 1)), found, best)
            best_dist = torch.where(better, dist, best_dist)
            best_lam = torch.where(better, search.weight, best_lam)
            search.update(success)
            if bool((search.settled() | already).all()):
                break
        return Perturbed(best, clean_logits=clean_logits, extra={"lam": best_lam})

    def _descend(
        self, x: torch.Tensor, goal: torch.Tensor, targeted: bool, lam: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One Adam run at fixed lam; the smallest adversarial iterate per example (x where none)."""
        x_adv = x.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([x_adv], lr=self.lr)
        best = x.clone()
        best_dist = torch.full_like(lam, torch.inf)
        for step in range(self.steps + 1):
            with torch.enable_grad():
                logits = self.logits(x_adv)
                if not logits.requires_grad:
                    raise InputError("the model's output has no gradient with respect to its input")
                dist2 = (x_adv - x).flatten(1).pow(2).sum(1)
                objective = F.softplus(goal_margin(logits, goal, targeted, 1.0)) + lam * dist2
                if step < self.steps:
                    optimizer.zero_grad(set_to_none=True)
                    objective.sum().backward()
            with torch.no_grad():  # the current iterate, before its step
                dist = dist2.detach().sqrt()
                better = self.is_adversarial(logits.detach(), goal, targeted) & (dist < best_dist)
                best = torch.where(better.view(-1, *[1] * (x.ndim - 1)), x_adv.detach(), best)
                best_dist = torch.where(better, dist, best_dist)
            if step == self.steps:
                break
            optimizer.step()
            with torch.no_grad():
                x_adv.clamp_(self.bounds[0], self.bounds[1])
        return best, best_dist, torch.isfinite(best_dist)
