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
With `search_steps` > 1, lam is searched per example like L-BFGS's c (`advlab.attacks.search.WeightSearch`):
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

from advlab.attacks.base import Attack, Perturbed, require_gradient
from advlab.attacks.losses import smooth_margin
from advlab.attacks.search import BestSoFar, WeightSearch
from advlab.validation import Bounds, check_count, check_positive


class Penalty(Attack):
    """Adam on CE + lam * ||r||^2 within the box, keeping the smallest success (L2)."""

    name = "penalty"
    fixed = {"norm": "l2"}  # a minimal-L2 attack: reported with its parameters

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

    def _perturb(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool, indices: torch.Tensor) -> Perturbed:
        with torch.no_grad():
            clean_logits = self.logits(x)
        already = self.is_adversarial(clean_logits, goal, targeted)
        search = WeightSearch(torch.full_like(clean_logits[:, 0], self.lam))
        distance = torch.where(already, 0.0, torch.inf).to(x.dtype)
        best = BestSoFar(x, distance, lam=torch.full_like(distance, torch.nan))
        for _ in self.rounds(self.search_steps, "search"):
            found, dist, success = self._descend(x, goal, targeted, search.weight)
            best.offer(found, dist, allowed=success, lam=search.weight)
            search.update(success)
            if bool((search.settled() | already).all()):
                break
        return Perturbed(best.x, clean_logits=clean_logits, extra={"lam": best.values["lam"]})

    def _descend(
        self, x: torch.Tensor, goal: torch.Tensor, targeted: bool, lam: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One Adam run at fixed lam; the smallest adversarial iterate per example (x where none)."""
        x_adv = x.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([x_adv], lr=self.lr)
        best = BestSoFar(x, torch.full_like(lam, torch.inf))
        for step in range(self.steps + 1):
            with torch.enable_grad():
                logits = self.logits(x_adv)
                require_gradient(logits)
                dist2 = (x_adv - x).flatten(1).pow(2).sum(1)
                objective = F.softplus(smooth_margin(logits, goal, targeted, 1.0)) + lam * dist2
                if step < self.steps:
                    optimizer.zero_grad(set_to_none=True)
                    objective.sum().backward()
            with torch.no_grad():  # the current iterate, before its step
                best.offer(x_adv.detach(), dist2.detach().sqrt(), allowed=self.is_adversarial(logits.detach(), goal, targeted))
            if step == self.steps:
                break
            optimizer.step()
            with torch.no_grad():
                x_adv.clamp_(self.bounds[0], self.bounds[1])
        return best.x, best.score, torch.isfinite(best.score)
