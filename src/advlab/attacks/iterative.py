"""Iterative gradient attacks: projected gradient descent (PGD) and the basic iterative method.

PGD (Madry et al. 2017, Sec. 2.1 and App. A): from a start point x^0 in the feasible set
S = {x' : ||x' - x|| <= eps} ∩ box, iterate

    x^{t+1} = Proj_S(x^t + alpha * d(g^t)),   g^t = grad_x L(x^t),

with the steepest-ascent direction d(g) = sign(g) under L-inf and g / ||g||_2 under L2
(`advlab.attacks.geometry`). The start is drawn uniformly from the ball (`random_start`; from
(seed, example index, restart) only, so independent of batch size and device) and the whole
run repeated `restarts` times, keeping per example the first successful result, else the
highest-loss one.
BIM (Kurakin, Goodfellow & Bengio 2016, Sec. 2.1) is the same iteration from x^0 = x.

L is cross-entropy to the goal label (`loss="ce"`) or the logit margin (`loss="margin"`,
Carlini & Wagner 2017's f6 without kappa), negated for targeted attacks.

`early_exit=True` is the evaluation mode: an example leaves the batch at the first iterate
the model misclassifies (checked on the logits already computed for that iterate's gradient)
and keeps that iterate, so the later steps run only on the still-robust examples.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from advlab.attacks.base import FixedBudgetAttack, Perturbed
from advlab.attacks.geometry import Region
from advlab.attacks.losses import OBJECTIVES
from advlab.attacks.search import ActiveSet, BestSoFar
from advlab.errors import InputError
from advlab.validation import Bounds, check_count, check_positive

LOSSES = tuple(OBJECTIVES)


class PGD(FixedBudgetAttack):
    """Projected gradient descent in the L-inf or L2 ball (Madry et al. 2017).

    step_size defaults to 2.5 * eps / steps (Madry et al. 2017, App. A). Random start r
    (r = 0 first, then one per restart) of example i is drawn from (seed, i, r) only.
    """

    name = "pgd"
    in_ball = True  # every iterate comes from Region.step / Region.project

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float,
        norm: str = "linf",
        step_size: float | None = None,
        steps: int = 40,
        random_start: bool = True,
        restarts: int = 1,
        early_exit: bool = False,
        loss: str = "ce",
        bounds: Bounds = (0.0, 1.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, bounds=bounds, **kwargs)
        self.steps = check_count("steps", steps)
        self.restarts = check_count("restarts", restarts)
        if self.restarts > 1 and not random_start:
            raise InputError("restarts > 1 needs random_start=True (runs from x itself are all the same)")
        self.step_size = 2.5 * self.eps / self.steps if step_size is None else check_positive("step_size", step_size)
        self.random_start = bool(random_start)
        self.early_exit = bool(early_exit)
        if loss not in LOSSES:
            raise InputError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        self.loss = loss

    def gradient(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Ascent gradient of the loss and the logits at x."""
        if self.loss == "ce":
            return self.loss_gradient(x, goal, targeted)
        return self.ascent_gradient(x, lambda logits: OBJECTIVES[self.loss](logits, goal, targeted))

    def _perturb(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool, indices: torch.Tensor) -> Perturbed:
        region = self.region(x)
        start = self.draw_start(region, indices, 0) if self.random_start else x
        best, clean_logits = self.run(region, start, goal, targeted)
        if self.restarts == 1:
            return Perturbed(best, clean_logits=None if self.random_start else clean_logits)
        objective = OBJECTIVES[self.loss]
        with torch.no_grad():
            logits = self.logits(best)
        found = self.is_adversarial(logits, goal, targeted)
        record = BestSoFar(best, -objective(logits, goal, targeted))  # lower is better
        for draw in self.rounds(self.restarts, "restart", start=1):
            todo = (~found).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            sub = region.take(todo)
            candidate, _ = self.run(sub, self.draw_start(sub, indices[todo.cpu()], draw), goal[todo], targeted)
            with torch.no_grad():
                logits = self.logits(candidate)
            success = self.is_adversarial(logits, goal[todo], targeted)
            score = torch.where(success, -math.inf, -objective(logits, goal[todo], targeted))
            record.offer(candidate, score, index=todo)
            found[todo] = success
        return Perturbed(record.x)

    def run(
        self, region: Region, x_adv: torch.Tensor, goal: torch.Tensor, targeted: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`steps` projected steps from x_adv; returns the result and the logits at x_adv.

        With early exit an example stops at its first adversarial iterate and keeps it.
        """
        grad, first_logits = self.gradient(x_adv, goal, targeted)
        if not self.early_exit:
            for step in range(self.steps):
                if step:
                    grad, _ = self.gradient(x_adv, goal, targeted)
                x_adv = region.step(x_adv, grad, self.step_size)
            return x_adv, first_logits
        active = ActiveSet(x_adv.clone())
        logits = first_logits
        for step in range(self.steps):
            if step:
                grad, logits = self.gradient(x_adv, goal, targeted)
            keep = active.retire(self.is_adversarial(logits, goal, targeted), x_adv)  # one host sync per step
            if keep is not None:
                if active.empty:
                    return active.out, first_logits
                x_adv, grad, goal, region = x_adv[keep], grad[keep], goal[keep], region.take(keep)
            x_adv = region.step(x_adv, grad, self.step_size)
        return active.finish(x_adv), first_logits


class BIM(PGD):
    """Basic iterative method (Kurakin et al. 2016): PGD from x itself, one run.

    Defaults follow the paper: step 1/255 of the box width and min(eps*255 + 4, 1.25 * eps*255)
    steps (eps in units of the box width).
    """

    name = "bim"

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float,
        norm: str = "linf",
        step_size: float | None = None,
        steps: int | None = None,
        early_exit: bool = False,
        loss: str = "ce",
        bounds: Bounds = (0.0, 1.0),
        **kwargs: Any,
    ) -> None:
        width = float(bounds[1]) - float(bounds[0])
        if steps is None:
            levels = 255 * float(eps) / width if math.isfinite(float(eps)) else 1.0
            steps = max(1, math.ceil(min(levels + 4, 1.25 * levels)))
        super().__init__(
            model,
            eps=eps,
            norm=norm,
            step_size=width / 255 if step_size is None else step_size,
            steps=steps,
            random_start=False,
            restarts=1,
            early_exit=early_exit,
            loss=loss,
            bounds=bounds,
            **kwargs,
        )
