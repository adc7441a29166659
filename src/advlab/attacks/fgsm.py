"""Fast gradient methods (Goodfellow, Shlens & Szegedy 2014, Sec. 4).

FGSM (L-inf): x' = clip(x + eps * sign(grad_x J(theta, x, y))), the exact maximiser of the
linearised loss over the eps-ball in L-inf. FGM (L2): x' = clip(x + eps * g / ||g||_2).
Both are x + eps * d(g), d the norm's steepest-ascent direction (`Geometry.direction`).
Targeted: step down the loss of the target label instead of up the loss of the true one.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from advlab.attacks.base import FixedBudgetAttack, Perturbed
from advlab.validation import Bounds


class FastGradient(FixedBudgetAttack):
    """One gradient step of size eps in the steepest-ascent direction of the class's norm."""

    norm: ClassVar[str]
    in_ball = True  # x + eps * d with ||d|| = 1

    def __init__(self, model: nn.Module, *, eps: float, bounds: Bounds = (0.0, 1.0), **kwargs: Any) -> None:
        super().__init__(model, eps=eps, norm=type(self).norm, bounds=bounds, **kwargs)

    def _perturb(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool, indices: torch.Tensor) -> Perturbed:
        grad, logits = self.loss_gradient(x, goal, targeted)
        return Perturbed(self.step(x, grad), clean_logits=logits)

    def step(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """x moved by eps along the norm's steepest-ascent direction of grad (unclipped)."""
        return x + self.eps * self.geometry.direction(grad)


class FGSM(FastGradient):
    """Fast gradient sign method, L-inf budget eps."""

    name = "fgsm"
    norm = "linf"
    norms = ("linf",)

    def step(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return x.add(grad.sign(), alpha=self.eps)  # one fused op


class FGM(FastGradient):
    """Fast gradient method, L2 budget eps: a step of length eps along the gradient."""

    name = "fgm"
    norm = "l2"
    norms = ("l2",)
