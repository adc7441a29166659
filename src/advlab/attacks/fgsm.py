"""Fast gradient methods (Goodfellow, Shlens & Szegedy 2014, Sec. 4).

FGSM (L-inf): x' = clip(x + eps * sign(grad_x J(theta, x, y))), the exact maximiser of the
linearised loss over the eps-ball in L-inf. FGM (L2): x' = clip(x + eps * g / ||g||_2).
Targeted: step down the loss of the target label instead of up the loss of the true one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from advlab.attacks.base import Attack, Bounds, Perturbed, check_eps


def fgsm_step(x: torch.Tensor, grad: torch.Tensor, eps: float) -> torch.Tensor:
    """x + eps * sign(grad), unclipped: the maximiser of the loss linearised at x over the L-inf eps-ball."""
    return x.add(grad.sign(), alpha=eps)


class FGSM(Attack):
    """Fast gradient sign method, L-inf budget eps."""

    name = "fgsm"

    def __init__(self, model: nn.Module, *, eps: float, bounds: Bounds = (0.0, 1.0), **kwargs: Any) -> None:
        super().__init__(model, bounds=bounds, **kwargs)
        self.eps = check_eps(eps, self.bounds, norm="linf")

    def params(self) -> dict[str, Any]:
        return {**super().params(), "eps": self.eps, "norm": "linf"}

    def _perturb(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool) -> Perturbed:
        grad, logits = self.loss_gradient(x, goal, targeted)
        return Perturbed(fgsm_step(x, grad, self.eps), clean_logits=logits)


class FGM(Attack):
    """Fast gradient method, L2 budget eps: a step of length eps along the gradient."""

    name = "fgm"

    def __init__(self, model: nn.Module, *, eps: float, bounds: Bounds = (0.0, 1.0), **kwargs: Any) -> None:
        super().__init__(model, bounds=bounds, **kwargs)
        self.eps = check_eps(eps, self.bounds, norm="l2")

    def params(self) -> dict[str, Any]:
        return {**super().params(), "eps": self.eps, "norm": "l2"}

    def _perturb(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool) -> Perturbed:
        grad, logits = self.loss_gradient(x, goal, targeted)
        norm = grad.flatten(1).norm(dim=1).clamp_min(torch.finfo(grad.dtype).tiny)
        step = grad / norm.view(-1, *([1] * (grad.ndim - 1)))
        return Perturbed(x + self.eps * step, clean_logits=logits)
