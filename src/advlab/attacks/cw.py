"""Carlini & Wagner's L2 attack (Carlini & Wagner 2017, Sec. V.A and VI).

The box constraint disappears under the change of variables x' = lo + (hi - lo)(tanh(w) + 1)/2
(Sec. V, "change of variables"); Adam then minimises, per example,

    ||x' - x||_2^2 + c * f6(x'),   f6(x') = max(z_o(x') - max_{k != o} z_k(x'), -kappa)

(untargeted, o the true label; targeted, f6 = max(max_{k != t} z_k - z_t, -kappa)), starting
each round from w = atanh of x. A binary search over c runs per example (Sec. VI): success
halves the gap towards a smaller c, failure moves up (x10 until a success has bounded it). The
result is the smallest perturbation that reached the goal with margin >= kappa over all
rounds; `extra["c"]` is the c it was found with (nan where none was found, 0 for inputs that
already reach the goal, returned unchanged).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from advlab.attacks.base import Attack, Perturbed
from advlab.attacks.losses import margin
from advlab.attacks.search import BestSoFar
from advlab.validation import Bounds, check_count, check_nonnegative, check_positive

ATANH_SHRINK = 1 - 1e-6  # keeps atanh finite at the box edges


class CarliniWagnerL2(Attack):
    """C&W L2 with a per-example binary search over c."""

    name = "cw"
    fixed = {"norm": "l2"}  # a minimal-L2 attack: reported with its parameters

    def __init__(
        self,
        model: nn.Module,
        *,
        kappa: float = 0.0,
        c: float = 1e-3,
        search_steps: int = 9,
        steps: int = 1000,
        lr: float = 0.01,
        abort_early: bool = True,
        bounds: Bounds = (0.0, 1.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(model, bounds=bounds, **kwargs)
        self.kappa = check_nonnegative("kappa", kappa)
        self.c = check_positive("c", c)
        self.search_steps = check_count("search_steps", search_steps)
        self.steps = check_count("steps", steps)
        self.lr = check_positive("lr", lr)
        self.abort_early = bool(abort_early)

    def _perturb(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool, indices: torch.Tensor) -> Perturbed:
        lo, width = self.bounds[0], self.bounds[1] - self.bounds[0]
        w_start = torch.atanh(((x - lo) / width * 2 - 1) * ATANH_SHRINK)
        n = x.shape[0]
        c = torch.full((n,), self.c, dtype=x.dtype, device=x.device)
        c_low, c_high = torch.zeros_like(c), torch.full_like(c, math.inf)
        with torch.no_grad():  # inputs that already reach the goal are their own answer (c = 0)
            clean_logits = self.logits(x)
            done = self.is_adversarial(clean_logits, goal, targeted) & (margin(clean_logits, goal, targeted) >= self.kappa)
        best = BestSoFar(x, torch.where(done, 0.0, math.inf).to(x.dtype), c=torch.where(done, 0.0, math.nan).to(x.dtype))
        check_every = max(1, self.steps // 10)
        for _ in self.rounds(self.search_steps, "search"):
            w = w_start.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([w], lr=self.lr)
            reached = torch.zeros(n, dtype=torch.bool, device=x.device)
            previous = math.inf
            for step in range(self.steps):
                with torch.enable_grad():
                    x_adv = lo + width * (torch.tanh(w) + 1) / 2
                    logits = self.logits(x_adv)
                    l2 = (x_adv - x).flatten(1).pow(2).sum(1)
                    value = margin(logits, goal, targeted)
                    loss = (l2 + c * (-value).clamp_min(-self.kappa)).sum()
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                with torch.no_grad():
                    success = self.is_adversarial(logits, goal, targeted) & (value >= self.kappa)
                    best.offer(x_adv, l2, allowed=success, c=c)
                    reached |= success
                optimizer.step()
                if self.abort_early and step % check_every == check_every - 1:
                    current = float(loss.detach())  # a host sync every steps/10 steps
                    if current > previous * 0.9999:
                        break
                    previous = current
            c_high = torch.where(reached, torch.minimum(c_high, c), c_high)
            c_low = torch.where(reached, c_low, torch.maximum(c_low, c))
            c = torch.where(c_high.isfinite(), (c_low + c_high) / 2, c * 10)
        return Perturbed(best.x.detach(), clean_logits=clean_logits, extra={"c": best.values["c"]})
