"""Adversarial training (Goodfellow, Shlens & Szegedy 2014, Sec. 6; Madry et al. 2017, Sec. 2-4).

Goodfellow et al. train on the mixed objective

    J~(theta, x, y) = alpha J(theta, x, y) + (1 - alpha) J(theta, x + eps sign(grad_x J(theta, x, y)), y)

with alpha = 0.5 and eps = .25 on MNIST, so that the supply of adversarial examples keeps up
with the current parameters. The adversarial example is a constant of the objective: no
gradient flows through its construction.

Model mode. Both terms of J~ are computed in train mode (dropout on). The adversarial example
itself is crafted by default (`craft_mode="eval"`) from the deterministic network, dropout off:
the network the paper attacks, and that FGSM attacks at test time. Read literally, J inside the
sign is the dropout training cost (`craft_mode="train"`); but through input dropout (p = 0.2)
grad_x J is exactly zero on the dropped pixels, so sign(grad) leaves a fifth of the pixels
unperturbed and the training examples are weaker than the test-time ones. After 30 epochs on
the 6,309-image MNIST prefix, the maxout network's FGSM error at eps = .25 on the first 2,000
test images was 42% with train-mode crafting and 27% with eval-mode crafting (standard
training: 96%). In train mode one backward pass of the clean term gives both the input
gradient and the clean term's parameter gradient.

`method="pgd"` replaces the FGSM example by `steps` steps of projected sign-gradient ascent on
J from a uniform random start in the eps-ball, clipped to the box (Madry et al. 2017, Sec. 2.1;
step 2.5 eps / steps, their App. A); Madry et al. train on the adversarial term alone, alpha = 0.

Both examples come from the attacks themselves (`FGSM`, `PGD` in `advlab.attacks`), through
`Attack.craft`: one batch, in the model's current mode, no validation or success check. The
seed of each batch's PGD random start is drawn from torch's global RNG, which `train_model`
seeds and checkpoints, so training stays deterministic and resumable.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks.fgsm import FGSM
from advlab.attacks.iterative import PGD
from advlab.errors import InputError
from advlab.models.inference import set_mode
from advlab.models.layers import as_multiclass_logits
from advlab.validation import check_bounds, check_count, check_eps, check_positive

METHODS = ("fgsm", "pgd")
CRAFT_MODES = ("eval", "train")


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(as_multiclass_logits(model(x)), y)


@dataclass(frozen=True)
class AdversarialObjective:
    """J~ = alpha J(x) + (1 - alpha) J(x_adv), x_adv by FGSM or PGD at L-inf budget eps.

    An `Objective` for `train_model`: call it as objective(model, x, y) with the model in train mode.
    `craft_mode` is the mode the adversarial example is computed in ("eval" or "train"; the loss
    terms are always in train mode). `steps`, `step_size` (default 2.5 eps / steps) and
    `random_start` apply to PGD only.
    """

    method: str = "fgsm"
    eps: float = 0.25
    alpha: float = 0.5
    steps: int = 10
    step_size: float | None = None
    random_start: bool = True
    bounds: tuple[float, float] = (0.0, 1.0)
    craft_mode: str = "eval"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"adversarial training method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.craft_mode not in CRAFT_MODES:
            raise InputError(f"craft_mode must be one of {', '.join(CRAFT_MODES)}, got {self.craft_mode!r}")
        bounds = check_bounds(self.bounds)
        object.__setattr__(self, "bounds", bounds)
        object.__setattr__(self, "eps", check_eps(self.eps, bounds))
        alpha = float(self.alpha)
        if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
            raise InputError(f"alpha must lie in [0, 1], got {self.alpha}")
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "steps", check_count("steps", self.steps))
        if self.step_size is not None:
            object.__setattr__(self, "step_size", check_positive("step_size", self.step_size))

    @classmethod
    def with_defaults(cls, method: str, *, eps: float | None = None, alpha: float | None = None, steps: int | None = None,
                      step_size: float | None = None, craft_mode: str = "eval") -> AdversarialObjective:
        """`method` with each paper's default for every setting left None: eps .25; alpha .5 for
        FGSM (Goodfellow et al. 2014, Sec. 6) and 0 for PGD (Madry et al. 2017: x_adv only);
        10 PGD steps. steps and step_size are PGD's only."""
        if method != "pgd" and (steps is not None or step_size is not None):
            raise InputError(f"steps and step_size apply to PGD only, not to {method!r}")
        settings: dict[str, Any] = {"eps": 0.25 if eps is None else eps, "craft_mode": craft_mode,
                                    "alpha": (0.0 if method == "pgd" else 0.5) if alpha is None else alpha}
        if method == "pgd":
            settings.update(steps=10 if steps is None else steps, step_size=step_size)
        return cls(method, **settings)

    def to_dict(self) -> dict[str, Any]:
        """The settings that define the objective (PGD's only for PGD), for checkpoints and reports."""
        settings = asdict(self)
        settings["bounds"] = list(self.bounds)
        if self.method == "fgsm":
            for key in ("steps", "step_size", "random_start"):
                del settings[key]
        else:
            settings["step_size"] = self.pgd_step_size
        return {"name": "adversarial", **settings}

    @property
    def pgd_step_size(self) -> float:
        return 2.5 * self.eps / self.steps if self.step_size is None else self.step_size

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.method == "fgsm" and self.craft_mode == "train":
            return self._fgsm_train_mode(model, x, y)
        with set_mode(model, self.craft_mode == "train"):
            x_adv = self.fgsm_example(model, x, y) if self.method == "fgsm" else self.pgd_example(model, x, y)
        if self.alpha == 0:
            return _loss(model, x_adv, y)
        # one forward pass over both halves (the dropout masks are drawn independently per row)
        logits = as_multiclass_logits(model(torch.cat([x, x_adv])))
        clean, adversarial = F.cross_entropy(logits, torch.cat([y, y]), reduction="none").view(2, -1).mean(1)
        return self.alpha * clean + (1 - self.alpha) * adversarial

    def fgsm_example(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """clip(x + eps sign(grad_x J(x, y))), in the model's current mode."""
        return FGSM(model, eps=self.eps, bounds=self.bounds, batch_size=len(x)).craft(x.detach(), y)

    def pgd_example(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """`steps` projected sign-gradient ascent steps on J within the eps-ball and the box.

        The random start's seed is drawn from torch's global RNG, which `train_model` seeds and checkpoints.
        """
        seed = int(torch.randint(0, 2**62, ()))
        attack = PGD(model, eps=self.eps, step_size=self.step_size, steps=self.steps,
                     random_start=self.random_start, bounds=self.bounds, batch_size=len(x), seed=seed)
        return attack.craft(x.detach(), y)

    def _fgsm_train_mode(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One backward pass of the clean term gives grad_x J and alpha * grad_theta J.

        The parameter part is left in `.grad` (the training loop zeroes it before and backpropagates
        the returned loss after); the returned value is J~, with only the adversarial term attached.
        """
        x = x.detach().requires_grad_(True)
        clean = _loss(model, x, y)
        params = [p for p in model.parameters() if p.requires_grad] if self.alpha else []
        grad_x, *grad_params = torch.autograd.grad(clean, [x, *params])
        for p, g in zip(params, grad_params):
            p.grad = self.alpha * g if p.grad is None else p.grad + self.alpha * g
        fgsm = FGSM(model, eps=self.eps, bounds=self.bounds, batch_size=len(x))
        x_adv = fgsm.constrain(x.detach(), fgsm.step(x.detach(), grad_x))
        adversarial = _loss(model, x_adv, y)
        return self.alpha * clean.detach() + (1 - self.alpha) * adversarial

