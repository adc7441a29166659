"""The shared attack machinery; each attack module holds only its paper's math.

`Attack.__call__(x, y, targets=...)` validates the inputs, resolves the targets, runs the
attack batch by batch on the model's device with the model in eval mode and its parameters
frozen (both restored afterwards), clips to the box, re-runs the model on every returned
example to set `success`, and measures the perturbation norms.
"""

from __future__ import annotations

import abc
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks.result import AttackResult
from advlab.errors import InputError
from advlab.models.inference import frozen_eval, model_device
from advlab.models.layers import as_multiclass_logits
from advlab.validation import Bounds, check_bounds, check_count, check_images, check_labels

TargetSpec = torch.Tensor | np.ndarray | Sequence[int] | Literal["random", "least-likely"] | None


class ProbabilityOutputWarning(UserWarning):
    """The model seems to output probabilities, whose gradients saturate; attacks want logits."""


@dataclass
class Perturbed:
    """What an attack's math returns for one batch."""

    x_adv: torch.Tensor
    clean_logits: torch.Tensor | None = None  # pass them when already computed, to save a pass
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


def _join(parts: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    return (parts[0] if len(parts) == 1 else torch.cat(parts)).to(device)


class Attack(abc.ABC):
    """Base of every attack: `attack(x, y, targets=None) -> AttackResult`.

    x: (N, ...) floating tensor with values in `bounds`; y: (N,) true labels.
    targets: None (untargeted), a (N,) tensor of goal labels (each must differ from y),
    "random" (a uniformly drawn other class, seeded), or "least-likely" (the clean argmin).
    """

    name: ClassVar[str]

    def __init__(
        self, model: nn.Module, *, bounds: Bounds = (0.0, 1.0), batch_size: int = 1000, seed: int = 0
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.bounds = check_bounds(bounds)
        self.batch_size = check_count("batch_size", batch_size)
        self.seed = int(seed)

    # ---- what subclasses provide -------------------------------------------------------
    @abc.abstractmethod
    def _perturb(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool) -> Perturbed:
        """Return adversarial candidates for one batch (the base clips them to the box).

        goal: the labels to move away from (untargeted) or towards (targeted).
        """

    def params(self) -> dict[str, Any]:
        """The attack's parameters, for reports."""
        return {"bounds": list(self.bounds), "batch_size": self.batch_size, "seed": self.seed}

    # ---- helpers for subclasses ---------------------------------------------------------
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return as_multiclass_logits(self.model(x))

    def loss_gradient(
        self, x: torch.Tensor, goal: torch.Tensor, targeted: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of the attack objective (CE to goal, negated when targeted) and the logits.

        The objective is summed over the batch, so each row is that example's own gradient.
        CE is written as softplus(logsumexp_{j != t} z_j - z_t): the same value as
        F.cross_entropy, but its gradient on the goal logit is -sigmoid(u) rather than p_t - 1,
        which is exactly 0 in float32 once the margin passes ~16.6 (FGSM then left confident
        examples unmoved although a linear model's worst case flips them).
        """
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.logits(x)
            if not logits.requires_grad:
                raise InputError("the model's output has no gradient with respect to its input")
            goal_logit = logits.gather(1, goal.unsqueeze(1)).squeeze(1)
            rivals = logits.scatter(1, goal.unsqueeze(1), -torch.inf).logsumexp(1)
            loss = F.softplus(rivals - goal_logit).sum()
            (grad,) = torch.autograd.grad(-loss if targeted else loss, x)
        return grad, logits.detach()

    @staticmethod
    def is_adversarial(logits: torch.Tensor, goal: torch.Tensor, targeted: bool) -> torch.Tensor:
        pred = logits.argmax(1)
        return pred == goal if targeted else pred != goal

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(self.bounds[0], self.bounds[1])

    # ---- the shared driver ----------------------------------------------------------------
    def __call__(self, x: Any, y: Any, *, targets: TargetSpec = None) -> AttackResult:
        x = self._validate_x(x)
        y = check_labels("y", y, x.shape[0])
        device = self._device(x)
        out_device = x.device
        with frozen_eval(self.model):
            num_classes = self.logits(x[:1].to(device)).shape[1]
            if bool(((y < 0) | (y >= num_classes)).any()):
                raise InputError(f"labels must lie in 0..{num_classes - 1}")
            resolved = self._resolve_targets(targets, x, y, num_classes, device)
            goal = y if resolved is None else resolved
            start = time.perf_counter()
            parts = [
                self._run_batch(x[i : i + self.batch_size].to(device), goal[i : i + self.batch_size].to(device), resolved is not None)
                for i in range(0, x.shape[0], self.batch_size)
            ]
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
        x_adv, clean_logits, adv_logits = (_join([p[k] for p in parts], out_device) for k in range(3))
        extra = {k: _join([p[3][k] for p in parts], out_device) for k in parts[0][3]}
        self._warn_if_probabilities(adv_logits)
        return AttackResult(
            attack=self.name,
            params=self.params(),
            x=x,
            x_adv=x_adv,
            labels=y.to(out_device),
            targets=None if resolved is None else resolved.to(out_device),
            success=self.is_adversarial(adv_logits, goal.to(out_device), resolved is not None),
            clean_logits=clean_logits,
            adv_logits=adv_logits,
            seconds=seconds,
            extra=extra,
        )

    def _run_batch(
        self, x: torch.Tensor, goal: torch.Tensor, targeted: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        found = self._perturb(x, goal, targeted)
        x_adv = self.clip(found.x_adv.detach())
        with torch.no_grad():
            adv_logits = self.logits(x_adv)
            clean_logits = found.clean_logits if found.clean_logits is not None else self.logits(x)
        return x_adv, clean_logits.detach(), adv_logits, found.extra

    def _validate_x(self, x: Any) -> torch.Tensor:
        x = check_images("x", x, self.bounds)
        param = next((p for p in self.model.parameters() if p.is_floating_point()), None)
        if param is not None and param.dtype != x.dtype:
            raise InputError(
                f"x is {x.dtype} but the model's parameters are {param.dtype}; convert one to the other"
            )
        return x

    def _device(self, x: torch.Tensor) -> torch.device:
        return model_device(self.model, x.device)

    def _resolve_targets(
        self, targets: TargetSpec, x: torch.Tensor, y: torch.Tensor, num_classes: int, device: torch.device
    ) -> torch.Tensor | None:
        if targets is None:
            return None
        if isinstance(targets, str):
            if targets == "random":
                generator = torch.Generator().manual_seed(self.seed)
                shift = torch.randint(1, num_classes, y.shape, generator=generator)
                return (y.cpu() + shift) % num_classes
            if targets == "least-likely":
                with torch.no_grad():
                    logits = torch.cat(
                        [self.logits(x[i : i + self.batch_size].to(device)).cpu() for i in range(0, len(x), self.batch_size)]
                    )
                logits.scatter_(1, y.cpu().unsqueeze(1), float("inf"))
                return logits.argmin(1)
            raise InputError(f"targets must be a tensor of labels, 'random' or 'least-likely', got {targets!r}")
        resolved = check_labels("targets", targets, len(y)).to(y.device)
        if bool(((resolved < 0) | (resolved >= num_classes)).any()):
            raise InputError(f"targets must lie in 0..{num_classes - 1}")
        same = (resolved == y).nonzero().flatten()
        if same.numel():
            raise InputError(
                f"targets equal the true labels at {same.numel()} example(s) (first: index {int(same[0])}); "
                "a targeted attack needs a class other than the true one"
            )
        return resolved

    @staticmethod
    def _warn_if_probabilities(logits: torch.Tensor) -> None:
        if logits.shape[1] > 1 and bool((logits >= 0).all()) and bool(
            torch.allclose(logits.sum(1), torch.ones_like(logits[:, 0]), atol=1e-4)
        ):
            warnings.warn(
                "the model's outputs are non-negative and sum to 1: it seems to output probabilities. "
                "Attacks need logits (gradients through softmax saturate); remove the final softmax.",
                ProbabilityOutputWarning,
                stacklevel=3,
            )
