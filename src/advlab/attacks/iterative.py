"""Iterative gradient attacks: projected gradient descent (PGD) and the basic iterative method.

PGD (Madry et al. 2017, Sec. 2.1 and App. A): from a start point x^0 in the feasible set
S = {x' : ||x' - x|| <= eps} ∩ box, iterate

    x^{t+1} = Proj_S(x^t + alpha * d(g^t)),   g^t = grad_x L(x^t),

with the steepest-ascent direction d(g) = sign(g) under L-inf and g / ||g||_2 under L2. The
start is drawn uniformly from the ball (`random_start`, seeded) and the whole run repeated
`restarts` times, keeping per example the first successful result, else the highest-loss one.
BIM (Kurakin, Goodfellow & Bengio 2016, Sec. 2.1) is the same iteration from x^0 = x.

L is cross-entropy to the goal label (`loss="ce"`) or the logit margin (`loss="margin"`,
Carlini & Wagner 2017's f6 without kappa), negated for targeted attacks.

`early_exit=True` is the evaluation mode: an example leaves the batch at the first iterate
the model misclassifies (checked on the logits already computed for that iterate's gradient)
and keeps that iterate, so the later steps run only on the still-robust examples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks.base import Attack, Perturbed, TargetSpec
from advlab.attacks.result import AttackResult
from advlab.errors import InputError
from advlab.validation import Bounds, check_count, check_eps, check_norm, check_positive

BALL_NORMS = ("linf", "l2")  # the norms whose balls the iterative attacks step and project in
LOSSES = ("ce", "margin")


def per_example(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """View a (N,) tensor so that it broadcasts against a (N, ...) batch."""
    return values.view(-1, *([1] * (like.ndim - 1)))


def margin_objective(logits: torch.Tensor, goal: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Per example: max_{k != y} z_k - z_y (untargeted) or z_t - max_{k != t} z_k (targeted).

    Positive exactly when the example is adversarial (ties aside).
    """
    goal_logit = logits.gather(1, goal.unsqueeze(1)).squeeze(1)
    others = logits.scatter(1, goal.unsqueeze(1), float("-inf")).amax(1)
    return goal_logit - others if targeted else others - goal_logit


def objective(logits: torch.Tensor, goal: torch.Tensor, targeted: bool, loss: str) -> torch.Tensor:
    """The per-example quantity the attack ascends."""
    if loss == "margin":
        return margin_objective(logits, goal, targeted)
    ce = F.cross_entropy(logits, goal, reduction="none")
    return -ce if targeted else ce


@dataclass
class Ball:
    """The feasible set {x' : ||x' - x|| <= eps} ∩ [lo, hi]^n of a batch, with per-example eps.

    Under L-inf the two sets are coordinate-wise intervals, so projecting onto their
    intersection is one clamp to [low, high].
    """

    x: torch.Tensor
    eps: torch.Tensor  # (N,)
    norm: str
    bounds: Bounds

    def __post_init__(self) -> None:
        eps = per_example(self.eps, self.x)
        if self.norm == "linf":
            self.low = (self.x - eps).clamp_min(self.bounds[0])
            self.high = (self.x + eps).clamp_max(self.bounds[1])

    @classmethod
    def of(cls, x: torch.Tensor, eps: float, norm: str, bounds: Bounds) -> Ball:
        return cls(x, torch.full((x.shape[0],), eps, dtype=x.dtype, device=x.device), norm, bounds)

    def take(self, index: torch.Tensor) -> Ball:
        return Ball(self.x[index], self.eps[index], self.norm, self.bounds)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            return torch.clamp(z, self.low, self.high)
        delta = z - self.x
        length = delta.flatten(1).norm(dim=1)
        scale = (self.eps / length.clamp_min(torch.finfo(z.dtype).tiny)).clamp_max(1.0)
        return (self.x + delta * per_example(scale, z)).clamp(self.bounds[0], self.bounds[1])

    def step(self, z: torch.Tensor, grad: torch.Tensor, alpha: float) -> torch.Tensor:
        """One steepest-ascent step of length alpha, projected back into the set."""
        if self.norm == "linf":
            return torch.clamp(z.add(grad.sign(), alpha=alpha), self.low, self.high)
        length = grad.flatten(1).norm(dim=1).clamp_min(torch.finfo(grad.dtype).tiny)
        return self.project(z + per_example(alpha / length, z) * grad)

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        """A point drawn uniformly from the ball, clipped to the box."""
        x = self.x
        if self.norm == "linf":
            u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            return self.project(x + (2 * u - 1) * per_example(self.eps, x))
        direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        direction = direction / per_example(direction.flatten(1).norm(dim=1).clamp_min(1e-12), x)
        u = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
        radius = self.eps * u.pow(1.0 / x[0].numel())
        return self.project(x + direction * per_example(radius, x))


class RandomStarts(Attack):
    """An attack that draws random starting points: every call draws the same ones for the
    same seed (one generator per call, advancing batch after batch)."""

    _generator: torch.Generator | None = None

    def __call__(self, x: Any, y: Any, *, targets: TargetSpec = None) -> AttackResult:
        self._generator = None
        return super().__call__(x, y, targets=targets)

    def generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator


class PGD(RandomStarts):
    """Projected gradient descent in the L-inf or L2 ball (Madry et al. 2017).

    step_size defaults to 2.5 * eps / steps (Madry et al. 2017, App. A).
    """

    name = "pgd"

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
        super().__init__(model, bounds=bounds, **kwargs)
        self.norm = check_norm(norm, BALL_NORMS)
        self.eps = check_eps(eps, self.bounds, norm=norm)
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

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "eps": self.eps,
            "norm": self.norm,
            "step_size": self.step_size,
            "steps": self.steps,
            "random_start": self.random_start,
            "restarts": self.restarts,
            "early_exit": self.early_exit,
            "loss": self.loss,
        }

    def gradient(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Ascent gradient of the loss and the logits at x."""
        if self.loss == "ce":
            return self.loss_gradient(x, goal, targeted)
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.logits(x)
            (grad,) = torch.autograd.grad(margin_objective(logits, goal, targeted).sum(), x)
        return grad, logits.detach()

    def _perturb(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool) -> Perturbed:
        ball = Ball.of(x, self.eps, self.norm, self.bounds)
        start = ball.sample(self.generator(x.device)) if self.random_start else x
        best, clean_logits = self.run(ball, start, goal, targeted)
        if self.restarts == 1:
            return Perturbed(best, clean_logits=None if self.random_start else clean_logits)
        with torch.no_grad():
            logits = self.logits(best)
        found = self.is_adversarial(logits, goal, targeted)
        best_value = objective(logits, goal, targeted, self.loss)
        for _ in range(self.restarts - 1):
            todo = (~found).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            sub = ball.take(todo)
            candidate, _ = self.run(sub, sub.sample(self.generator(x.device)), goal[todo], targeted)
            with torch.no_grad():
                logits = self.logits(candidate)
            success = self.is_adversarial(logits, goal[todo], targeted)
            value = objective(logits, goal[todo], targeted, self.loss)
            better = success | (value > best_value[todo])
            best[todo] = torch.where(per_example(better, candidate), candidate, best[todo])
            best_value[todo] = torch.where(better, value, best_value[todo])
            found[todo] = success
        return Perturbed(best)

    def run(
        self, ball: Ball, x_adv: torch.Tensor, goal: torch.Tensor, targeted: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`steps` projected steps from x_adv; returns the result and the logits at x_adv.

        With early exit an example stops at its first adversarial iterate and keeps it.
        """
        grad, first_logits = self.gradient(x_adv, goal, targeted)
        if not self.early_exit:
            for step in range(self.steps):
                if step:
                    grad, _ = self.gradient(x_adv, goal, targeted)
                x_adv = ball.step(x_adv, grad, self.step_size)
            return x_adv, first_logits
        out = x_adv.clone()
        active = torch.arange(x_adv.shape[0], device=x_adv.device)
        logits = first_logits
        for step in range(self.steps):
            if step:
                grad, logits = self.gradient(x_adv, goal, targeted)
            robust = ~self.is_adversarial(logits, goal, targeted)
            keep = robust.nonzero().squeeze(1)  # the one host sync per step that early exit needs
            if keep.numel() < active.numel():
                done = (~robust).nonzero().squeeze(1)
                out[active[done]] = x_adv[done]
                if keep.numel() == 0:
                    return out, first_logits
                active, x_adv, grad, goal, ball = active[keep], x_adv[keep], grad[keep], goal[keep], ball.take(keep)
            x_adv = ball.step(x_adv, grad, self.step_size)
        out[active] = x_adv
        return out, first_logits


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
