"""DeepFool (Moosavi-Dezfooli, Fawzi & Frossard 2016, Alg. 2 and Sec. 3.3): minimal perturbations.

At the current point x_i, linearise the margins f_k = z_k - z_o of the rival classes k against
the origin class o (the true label, untargeted): the nearest linearised boundary is

    k* = argmin_k |f_k| / ||w_k||_q,   w_k = grad f_k,   q the dual norm (2 for L2, 1 for L-inf),

and the step that reaches it is r_i = (|f_k*| / ||w_k*||_q + 1e-4) * d(w_k*) with d(w) = w / ||w||_2
(L2) or sign(w) (L-inf); the 1e-4 is the reference code's push across the boundary. The total
step is scaled by (1 + overshoot): x_{i+1} = clip(x_0 + (1 + overshoot) * sum_j r_j). An example
stops at its first adversarial iterate. Rival classes are the `candidates - 1` classes with the
highest clean logits; targeted, the only rival is the target and the origin is the current top
class among the others.

All rival gradients of a batch come from one forward/backward pass over the batch repeated once
per rival (a batched Jacobian of the rival margins).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from advlab.attacks.base import Attack, Perturbed
from advlab.attacks.geometry import geometry, per_example
from advlab.attacks.losses import top_rivals
from advlab.attacks.search import ActiveSet
from advlab.validation import Bounds, check_count, check_norm, check_nonnegative

PUSH = 1e-4


class DeepFool(Attack):
    """DeepFool under L2 or L-inf; reports the perturbation it ends with."""

    name = "deepfool"
    norms = ("linf", "l2")

    def __init__(
        self,
        model: nn.Module,
        *,
        norm: str = "l2",
        steps: int = 50,
        overshoot: float = 0.02,
        candidates: int = 10,
        bounds: Bounds = (0.0, 1.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(model, bounds=bounds, **kwargs)
        self.geometry = geometry(check_norm(norm, self.norms))
        self.norm = norm
        self.steps = check_count("steps", steps)
        self.overshoot = check_nonnegative("overshoot", overshoot)
        self.candidates = check_count("candidates", candidates, minimum=2)

    def rival_margins(
        self, x: torch.Tensor, goal: torch.Tensor, rivals: torch.Tensor, targeted: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Margins f (K, N), their input gradients w (K, N, ...) and the logits (N, C) at x."""
        k = rivals.shape[1]
        tiled = x.detach().unsqueeze(0).expand(k, *x.shape).reshape(k * x.shape[0], *x.shape[1:])
        tiled.requires_grad_(True)
        with torch.enable_grad():
            logits = self.logits(tiled).view(k, x.shape[0], -1)
            if targeted:  # origin: the current top class other than the target
                origin = logits[0].detach().scatter(1, goal.unsqueeze(1), float("-inf")).argmax(1)
            else:
                origin = goal
            rival = logits.gather(2, rivals.t().unsqueeze(2)).squeeze(2)
            margins = rival - logits.gather(2, origin.expand(k, -1).unsqueeze(2)).squeeze(2)
            (grads,) = torch.autograd.grad(margins.sum(), tiled)
        return margins.detach(), grads.view(k, *x.shape), logits[0].detach()

    def walk(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """DeepFool's iterates from x: per example its first adversarial one (the last where
        none is), clipped to the box; and the clean logits. MinPGD starts from these."""
        with torch.no_grad():
            clean_logits = self.logits(x)
        rivals = goal.unsqueeze(1) if targeted else top_rivals(clean_logits, goal, self.candidates - 1)
        active = ActiveSet(x.clone())
        x0, total, x_i = x, torch.zeros_like(x), x
        for _ in range(self.steps):
            margins, grads, logits = self.rival_margins(x_i, goal, rivals, targeted)
            keep = active.retire(self.is_adversarial(logits, goal, targeted), x_i)
            if keep is not None:
                if active.empty:
                    return active.out, clean_logits
                x0, total, x_i, goal, rivals = (t[keep] for t in (x0, total, x_i, goal, rivals))
                margins, grads = margins[:, keep], grads[:, keep]
            k, n = margins.shape
            dual = self.geometry.dual(grads.reshape(k * n, *grads.shape[2:])).view(k, n)
            distance, nearest = (margins.abs() / dual.clamp_min(torch.finfo(dual.dtype).tiny)).min(0)
            w = grads[nearest, torch.arange(n, device=x.device)]
            total = total + per_example(distance + PUSH, w) * self.geometry.direction(w)
            x_i = self.clip(x0 + (1 + self.overshoot) * total)
        return active.finish(x_i), clean_logits

    def _perturb(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool, indices: torch.Tensor) -> Perturbed:
        x_adv, clean_logits = self.walk(x, goal, targeted)
        return Perturbed(x_adv, clean_logits=clean_logits)
