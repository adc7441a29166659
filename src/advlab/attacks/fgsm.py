"""Fast gradient methods (Goodfellow, Shlens & Szegedy 2014, Sec. 4).

FGSM (L-inf): x' = clip(x + eps * sign(grad_x J(theta, x, y))), the exact maximiser of the
linearised loss over the eps-ball in L-inf. FGM (L2): x' = clip(x + eps * g / ||g||_2).
Targeted: step down the loss of the target label instead of up the loss of the true one.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch
from torch import nn

from advlab.attacks.base import Attack, Perturbed
from advlab.validation import Bounds, check_eps


def fgsm_step(x: torch.Tensor, grad: torch.Tensor, eps: float) -> torch.Tensor:
    """x + eps * sign(grad), unclipped: the maximiser of the loss linearised at x over the L-inf eps-ball."""
    return x.add(grad.sign(), alpha=eps)


class FastGradient(Attack):
    """One gradient step of size eps in the steepest-ascent direction of a norm."""

    norm: ClassVar[str]

    def __init__(self, model: nn.Module, *, eps: float, bounds: Bounds = (0.0, 1.0), **kwargs: Any) -> None:
        super().__init__(model, bounds=bounds, **kwargs)
        self.eps = check_eps(eps, self.bounds, norm=self.norm)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "eps": self.eps, "norm": self.norm}

    def _perturb(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool) -> Perturbed:
        grad, logits = self.loss_gradient(x, goal, targeted)
        return Perturbed(self.step(x, grad), clean_logits=logits)

    @abc.abstractmethod
    def step(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """x moved by eps along the norm's steepest-ascent direction of grad."""


class FGSM(FastGradient):
    """Fast gradient sign method, L-inf budget eps."""

    name = "fgsm"
    norm = "linf"

    def step(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return fgsm_step(x, grad, self.eps)


class FGM(FastGradient):
    """Fast gradient method, L2 budget eps: a step of length eps along the gradient."""

    name = "fgm"
    norm = "l2"

    def step(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        norm = grad.flatten(1).norm(dim=1).clamp_min(torch.finfo(grad.dtype).tiny)
        return x + self.eps * grad / norm.view(-1, *([1] * (grad.ndim - 1)))
