"""How a model's outputs are read, trained and attacked in the Goodfellow et al. 2014 claims.

A head turns the outputs z (N, C) into class probabilities and a training cost J:

- `SOFTMAX`: p = softmax(z), J = cross-entropy (the maxout networks, softmax regression);
- `SIGMOID`: independent one-vs-all units, p_k = sigmoid(z_k), J = sum_k BCE(p_k, [y = k])
  (the maxout network "with the top layer changed to independent sigmoids" of App. A, and the
  RBF network of Sec. 7, whose outputs are its units' log-odds).

The prediction is arg max_k z_k, the confidence max_k p_k. FGSM ascends the head's own cost J,
the cost the model was trained on (`HeadFGSM`). Training objectives: `OneVsAll` (the SIGMOID
cost) and `NoiseObjective`, Sec. 6's control: J~ = alpha J(x) + (1 - alpha) J(clip(x + noise)),
the noise eps * sign(u) or u, u ~ U(-eps, eps) per pixel, drawn from torch's global RNG (which
`train_model` seeds and checkpoints). `Ensemble`: the log of the members' mean softmax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks import FGSM
from advlab.attacks.losses import cross_entropy
from advlab.errors import InputError
from advlab.models.layers import as_multiclass_logits

NOISE_KINDS = ("sign", "uniform")


@dataclass(frozen=True)
class Head:
    name: str  # "softmax" or "sigmoid"

    def probabilities(self, z: torch.Tensor) -> torch.Tensor:
        return z.softmax(1) if self.name == "softmax" else z.sigmoid()

    def cost(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """J per example (N,): cross-entropy, or the sum of the units' binary cross-entropies."""
        if self.name == "softmax":
            return cross_entropy(z, y, False)
        return F.binary_cross_entropy_with_logits(z, F.one_hot(y, z.shape[1]).to(z.dtype), reduction="none").sum(1)


SOFTMAX, SIGMOID = Head("softmax"), Head("sigmoid")


def one_vs_all(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The training objective of a SIGMOID head: mean over the batch of sum_k BCE(sigmoid(z_k), [y = k])."""
    return SIGMOID.cost(as_multiclass_logits(model(x)), y).mean()


@dataclass(frozen=True)
class NoiseObjective:
    """J~ = alpha CE(x) + (1 - alpha) CE(clip(x + noise)): Sec. 6's control, noise instead of FGSM."""

    kind: str  # "sign": eps * sign(u); "uniform": u; u ~ U(-eps, eps) per pixel
    eps: float = 0.25
    alpha: float = 0.5
    bounds: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.kind not in NOISE_KINDS:
            raise InputError(f"noise must be one of {', '.join(NOISE_KINDS)}, got {self.kind!r}")
        if not (math.isfinite(self.eps) and self.eps > 0 and 0 <= self.alpha <= 1):
            raise InputError(f"need eps > 0 and alpha in [0, 1], got {self.eps}, {self.alpha}")

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        u = (2 * torch.rand(x.shape) - 1).to(x.device, x.dtype) * self.eps
        return u.sign() * self.eps if self.kind == "sign" else u

    def to_dict(self) -> dict[str, Any]:
        return {"name": "noise", "kind": self.kind, "eps": self.eps, "alpha": self.alpha, "bounds": list(self.bounds)}

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        noisy = (x + self.noise(x)).clamp(*self.bounds)
        logits = as_multiclass_logits(model(torch.cat([x, noisy])))  # one pass; dropout masks drawn per row
        clean, noised = F.cross_entropy(logits, torch.cat([y, y]), reduction="none").view(2, -1).mean(1)
        return self.alpha * clean + (1 - self.alpha) * noised


class HeadFGSM(FGSM):
    """FGSM on the head's own cost J: x' = clip(x + eps sign(grad_x J)) (targeted: down J of the target)."""

    def __init__(self, model: nn.Module, *, eps: float, head: Head = SOFTMAX, **kwargs: Any) -> None:
        super().__init__(model, eps=eps, **kwargs)
        self.head = head

    def params(self) -> dict[str, Any]:
        return {**super().params(), "head": self.head.name}

    def loss_gradient(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool) -> tuple[torch.Tensor, torch.Tensor]:
        sign = -1.0 if targeted else 1.0
        return self.ascent_gradient(x, lambda z: sign * self.head.cost(z, goal))


class Ensemble(nn.Module):
    """log of the members' mean softmax probabilities: its softmax is their average."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise InputError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logs = torch.stack([as_multiclass_logits(m(x)).log_softmax(1) for m in self.members])
        return logs.logsumexp(0) - math.log(len(self.members))
