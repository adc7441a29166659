"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks", Sec. 3) and its targeted version on the DLR loss (Sec. 4).

From a random point of the eps-ball (on its surface) APGD runs, with eta the step size,

    z = P(x_k + eta sign(g_k))            (L2: g_k / ||g_k||_2)
    x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1})),   a = 0.75 (1 at the first step)

P the projection onto ball ∩ box. eta starts at 2 eps and is halved at checkpoints
w_j (w_0 = 0, w_1 = 0.22 N_iter, then gaps shrinking by 0.03 N_iter down to 0.06 N_iter) when
(1) the loss rose at fewer than rho = 0.75 of the steps since the last checkpoint, or (2) the step
was not halved at the last checkpoint and the best loss has not improved since; the iterate then
restarts from the best point so far (Sec. 3.2). Restarts run only on examples still robust.

Losses: cross-entropy, or the difference of logits ratio (Sec. 4)
    DLR(x, y) = -(z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3),
with z_pi1 >= z_pi2 >= ... the sorted logits, invariant to shifting and scaling the logits; APGD-T
ascends the targeted DLR -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2) once for each of the
`targets` most likely other classes t (ranked at x), or the `targets` first of MALT's ranking
(`target_ranking="malt"`, `advlab.attacks.targeting`). APGD-T is untargeted in its outcome: any
misclassification counts. DLR needs 3 classes and targeted DLR 4: with fewer the attack warns and
falls back to cross-entropy (targeted cross-entropy for APGD-T), the loss the reference code
offers for this case; `targets` is capped at the number of other classes.

A rise of the loss, and an improvement of the best loss, count only beyond rounding (`exceeds`:
by more than eps^(3/4) (1 + |loss|), 1.8e-12 in float64, 6.4e-6 in float32; the reference code
uses a strict `>`): iterates revisit points, whose losses in another batch shape differ by a
few ulps, and a strict comparison of those would let the batching decide when the step halves.

Under L1 (Croce & Hein 2021, "Mind the box: l1-APGD for sparse adversarial attacks on image
classifiers", Sec. 3) the start is x + t (t standard normal) projected onto ball ∩ box, the step
moves sign(g_i) on the coordinates whose |g_i| is among the largest share k of them, each by
eta / (their number), with no momentum, eta starting at eps; every 4% of the iterations k becomes
||x_best - x||_0 / (1.5 n), and eta resets to eps with the iterate back at the best point where
that support shrank by more than 5%, else eta shrinks by 1.5 (within [eps / 10, eps]). Every
projection is the exact one onto the L1 ball ∩ box (`geometry.L1Ball`).

What depends on the norm lives in the norm's `Geometry` (start, ascent step, projection).

Randomised models: with `eot` > 1 every loss and gradient is the mean over `eot` forward and
backward passes (expectation over transformation, Athalye et al. 2018; AutoAttack's `rand`
version uses 20).

Each example leaves the batch at its first misclassified iterate (early exit; the others are
unaffected, as every quantity above is per example). Starts are drawn from (seed, example index,
restart), so results do not depend on the batch size.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks.base import FixedBudgetAttack, Perturbed
from advlab.attacks.geometry import Region, Rows, per_example
from advlab.attacks.losses import dlr as dlr_loss
from advlab.attacks.losses import targeted_dlr as targeted_dlr_loss
from advlab.attacks.randomness import counter_uniform
from advlab.attacks.search import exceeds
from advlab.attacks.targeting import check_ranking, rank_targets
from advlab.errors import InputError
from advlab.validation import Bounds, check_count

LOSSES = ("ce", "dlr")


class DLRFallbackWarning(UserWarning):
    """The DLR loss is undefined for this number of classes; cross-entropy is used instead."""


@dataclass
class _Run(Rows):
    """Per-example state of one APGD run (all tensors indexed by example; `ball` their feasible set)."""

    ball: Region
    y: torch.Tensor
    target: torch.Tensor
    slot: torch.Tensor  # row of this example in the batch
    x_adv: torch.Tensor
    x_old: torch.Tensor
    x_best: torch.Tensor
    grad: torch.Tensor
    grad_best: torch.Tensor
    loss_last: torch.Tensor
    loss_best: torch.Tensor
    loss_best_at_check: torch.Tensor
    reduced_at_check: torch.Tensor
    rises: torch.Tensor
    step: torch.Tensor
    sparsity: torch.Tensor  # L1: the share of coordinates a step moves
    support: torch.Tensor  # L1: nonzero coordinates of x_best - x at the last checkpoint


def checkpoints(steps: int) -> list[int]:
    """The iterations after which the step size is checked (Sec. 3.2)."""
    gap, shrink, floor = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    out, at = [], 0
    while at + gap <= steps:
        at += gap
        out.append(at)
        gap = max(gap - shrink, floor)
    return out


class APGD(FixedBudgetAttack):
    """Auto-PGD on cross-entropy or DLR, under L-inf, L2 (Croce & Hein 2020, Alg. 1) or L1
    (Croce & Hein 2021)."""

    name = "apgd"
    norms = ("linf", "l2", "l1")

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float,
        norm: str = "linf",
        steps: int = 100,
        restarts: int = 1,
        loss: str = "ce",
        rho: float = 0.75,
        eot: int = 1,
        bounds: Bounds = (0.0, 1.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, bounds=bounds, **kwargs)
        self.eot = check_count("eot", eot)
        self.steps = check_count("steps", steps)
        self.restarts = check_count("restarts", restarts)
        if loss not in LOSSES:
            raise InputError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        self.loss = loss
        self.rho = float(rho)
        if not 0 < self.rho < 1:
            raise InputError(f"rho must lie in (0, 1), got {rho}")

    # ---- what the targeted version changes ---------------------------------------------------
    def _passes(self, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[torch.Tensor | None]:
        """One entry per pass over the still-robust examples: the targets (None: untargeted)."""
        return [None] * self.restarts

    def _objective(self, num_classes: int, targeted_pass: bool) -> str:
        if self.loss == "dlr" and num_classes < 3:
            warnings.warn(f"the DLR loss needs at least 3 classes, the model has {num_classes}: using cross-entropy",
                          DLRFallbackWarning, stacklevel=4)
            return "ce"
        return self.loss

    # ---- the attack ---------------------------------------------------------------------------
    def _perturb(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool, indices: torch.Tensor) -> Perturbed:
        index = indices.to(x.device)
        with torch.no_grad():
            clean_logits = self.logits(x)
        out = x.clone()
        # a caller's target: reach it (targeted cross-entropy), moving away from the clean prediction
        y = clean_logits.argmax(1) if targeted else goal
        robust = (y != goal) if targeted else (clean_logits.argmax(1) == goal)
        if self.eps == 0:
            return Perturbed(out, clean_logits=clean_logits)
        best_loss = torch.full((x.shape[0],), -math.inf, dtype=x.dtype, device=x.device)
        passes = [goal] * self.restarts if targeted else self._passes(x, goal, clean_logits.shape[1])
        for number, targets in enumerate(passes):
            todo = robust.nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            rows = slice(None) if todo.numel() == len(x) else todo  # no gathers while every point is open
            objective = "ce" if targeted else self._objective(clean_logits.shape[1], targets is not None)
            point, loss_best, broken = self.run(
                x[rows], y[rows], None if targets is None else targets[rows], self._start(x[rows], index[rows], number),
                objective, reach=targeted,
            )
            better = broken | (loss_best > best_loss[rows])
            out[rows] = _where_rows(better, (point,), (out[rows],))[0]
            best_loss[rows] = torch.where(better, loss_best, best_loss[rows])
            robust[rows] = ~broken
        return Perturbed(out, clean_logits=clean_logits)

    def _start(self, x: torch.Tensor, index: torch.Tensor, number: int) -> torch.Tensor:
        """The geometry's start from noise t: x + eps t / ||t|| (t uniform in [-1, 1]^n under L-inf,
        standard normal under L2), clipped to the box; under L1, x + t projected onto ball ∩ box."""
        k = self.geometry.start_draws
        draws = counter_uniform(self.seed, index, number, k * x[0].numel(), device=x.device).to(x.dtype)
        pairs = draws.view(x.shape[0], -1, k)
        t = self.geometry.noise(pairs[..., 0].reshape(x.shape), pairs[..., k - 1].reshape(x.shape))
        return self.geometry.start(x, t, self.eps, self.bounds)

    def _loss_grad(self, state: _Run, objective: str, targeted: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(per-example loss, its gradient, logits) at state.x_adv; with `eot` > 1 the loss and the
        gradient are the means over `eot` passes, the logits the last pass's (as the reference code)."""
        loss, grad, logits = self._one_loss_grad(state, objective, targeted)
        if self.eot == 1:
            return loss, grad, logits
        for _ in range(self.eot - 1):
            more_loss, more_grad, logits = self._one_loss_grad(state, objective, targeted)
            loss, grad = loss + more_loss, grad + more_grad
        return loss / self.eot, grad / self.eot, logits

    def _one_loss_grad(self, state: _Run, objective: str, targeted: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._loss_grad_at(state.x_adv, state.y, state.target, objective, targeted)

    def _loss_grad_at(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, objective: str,
                      targeted: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(per-example loss, its input gradient, logits) at x: CE or DLR, towards `target` when targeted."""
        z = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.logits(z)
            if not logits.requires_grad:
                raise InputError("the model's output has no gradient with respect to its input")
            if objective == "ce":
                loss = -F.cross_entropy(logits, target, reduction="none") if targeted else F.cross_entropy(logits, y, reduction="none")
            elif targeted:
                loss = targeted_dlr_loss(logits, y, target)
            else:
                loss = dlr_loss(logits, y)
            (grad,) = torch.autograd.grad(loss.sum(), z)
        return loss.detach(), grad, logits.detach()

    def _step(self, state: _Run, momentum: float) -> torch.Tensor:
        """The momentum step of Sec. 3.1, projected (fused in-place arithmetic: this is the inner loop)."""
        g, x_adv = state.grad, state.x_adv
        scale, direction = self.geometry.ascent(g, state.step, state.sparsity)
        z = state.ball.project(torch.addcmul(x_adv, per_example(scale, g), direction), inplace=True)
        if momentum == 1 or not self.geometry.momentum:  # the first step (or no momentum): z is the new iterate
            return z
        # x + a (z - x) + (1 - a)(x - x_old), in this order (rounding decides sign(g) ties later on)
        z.sub_(x_adv).mul_(momentum)
        return state.ball.project(torch.add(x_adv, z).add_(torch.sub(x_adv, state.x_old).mul_(1 - momentum)), inplace=True)

    def run(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, start: torch.Tensor, objective: str,
        reach: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One APGD run from `start`: (the adversarial point where found, else the best-loss point;
        the best loss; found), each (n, ...) in the order of x. Found: misclassified, or at
        `target` when `reach`."""
        n = x.shape[0]
        targeted = target is not None
        point, loss_best_all = torch.empty_like(x), torch.empty(n, dtype=x.dtype, device=x.device)
        broken = torch.zeros(n, dtype=torch.bool, device=x.device)
        zeros = torch.zeros(n, dtype=x.dtype, device=x.device)
        state = _Run(
            ball=self.geometry.region(x, self.eps, self.bounds), y=y, target=y if target is None else target,
            slot=torch.arange(n, device=x.device), x_adv=start, x_old=start, x_best=start,
            grad=start, grad_best=start, loss_last=zeros, loss_best=zeros, loss_best_at_check=zeros,
            reduced_at_check=torch.ones(n, dtype=torch.bool, device=x.device),
            rises=torch.zeros(n, dtype=torch.long, device=x.device),
            step=torch.full((n,), self.geometry.apgd_alpha * self.eps, dtype=x.dtype, device=x.device),
            sparsity=torch.full((n,), 0.2, dtype=x.dtype, device=x.device),
            support=torch.full((n,), float(x[0].numel()), dtype=x.dtype, device=x.device),
        )
        loss, state.grad, logits = self._loss_grad(state, objective, targeted)  # replaces the placeholders
        state.grad_best, state.loss_last, state.loss_best, state.loss_best_at_check = state.grad, loss, loss, loss
        sparse = self.geometry.adaptive_sparsity
        marks = set(range(_sparse_gap(self.steps), self.steps + 1, _sparse_gap(self.steps)) if sparse else checkpoints(self.steps))
        since = 0
        for i in range(self.steps + 1):
            miss = logits.argmax(1) == state.target if reach else logits.argmax(1) != state.y
            if bool(miss.any()):  # early exit: keep the first misclassified iterate
                done = miss.nonzero().squeeze(1)
                rows = state.slot[done]
                point[rows], loss_best_all[rows] = state.x_adv[done], state.loss_best[done]
                broken[rows] = True
                keep = (~miss).nonzero().squeeze(1)
                if keep.numel() == 0:
                    return point, loss_best_all, broken
                state = state.take(keep)
            if i == self.steps:
                break
            x_new = self._step(state, 1.0 if i == 0 else 0.75)
            state.x_old, state.x_adv = state.x_adv, x_new
            loss, state.grad, logits = self._loss_grad(state, objective, targeted)
            state.rises += exceeds(loss, state.loss_last)
            state.loss_last = loss
            improved = exceeds(loss, state.loss_best)
            state.x_best, state.grad_best = _where_rows(improved, (x_new, state.grad), (state.x_best, state.grad_best))
            state.loss_best = torch.where(improved, loss, state.loss_best)
            since += 1
            if i + 1 in marks and sparse:
                self._adapt_sparsity(state)
            elif i + 1 in marks:
                oscillating = state.rises <= since * self.rho
                stalled = ~state.reduced_at_check & (state.loss_best_at_check >= state.loss_best)
                halve = oscillating | stalled
                state.reduced_at_check, state.loss_best_at_check = halve, state.loss_best
                state.step = torch.where(halve, state.step / 2, state.step)
                state.x_adv, state.grad = _where_rows(halve, (state.x_best, state.grad_best), (state.x_adv, state.grad))
                state.rises.zero_()
                since = 0
        point[state.slot], loss_best_all[state.slot] = state.x_best, state.loss_best
        return point, loss_best_all, broken

    def _adapt_sparsity(self, state: _Run) -> None:
        """L1 checkpoint (Croce & Hein 2021, Sec. 3.2): k = ||x_best - x||_0 / 1.5 coordinates from
        now on; where the support shrank by more than 5%, the step resets to eps and the iterate to
        the best point, elsewhere the step shrinks by 1.5 (within [eps / 10, eps])."""
        support = (state.x_best != state.ball.x).flatten(1).sum(1).to(state.step.dtype)
        shrank = support / state.support < 0.95
        state.sparsity = support / state.ball.x[0].numel() / 1.5
        full = self.geometry.apgd_alpha * self.eps
        state.step = torch.where(shrank, full, state.step / 1.5).clamp(full / 10, full)
        state.support = support
        state.x_adv, state.grad = _where_rows(shrank, (state.x_best, state.grad_best), (state.x_adv, state.grad))


def _sparse_gap(steps: int) -> int:
    """The L1 variant checks its step every 4% of the iterations (Croce & Hein 2021)."""
    return max(int(0.04 * steps), 1)


def _where_rows(mask: torch.Tensor, chosen: tuple[torch.Tensor, ...], other: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Per row: the rows of `chosen` where mask, of `other` elsewhere (no copy when the mask is uniform)."""
    if bool(mask.all()):
        return chosen
    if not bool(mask.any()):
        return other
    rows = per_example(mask, chosen[0])
    return tuple(torch.where(rows, a, b) for a, b in zip(chosen, other))


class APGDT(APGD):
    """APGD-T: APGD on the targeted DLR loss, once per target among the `targets` first other
    classes of `target_ranking` (Croce & Hein 2020, Sec. 4: "confidence", the most likely; or
    "malt", Melamed et al. 2024: the smallest linearised distance to the boundary, see
    `advlab.attacks.targeting`); success is any misclassification."""

    name = "apgd-t"

    fixed = {"loss": "dlr"}

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float,
        norm: str = "linf",
        steps: int = 100,
        restarts: int = 1,
        rho: float = 0.75,
        targets: int = 9,
        target_ranking: str = "confidence",
        eot: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, steps=steps, restarts=restarts, loss="dlr", rho=rho, eot=eot, **kwargs)
        self.targets = check_count("targets", targets)
        self.target_ranking = check_ranking(target_ranking)

    def _passes(self, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[torch.Tensor | None]:
        ranked = rank_targets(self, x, min(self.targets, num_classes - 1), self.target_ranking)
        return [ranked[:, k] for k in range(ranked.shape[1]) for _ in range(self.restarts)]

    def _objective(self, num_classes: int, targeted_pass: bool) -> str:
        if num_classes < 4:
            warnings.warn(f"the targeted DLR loss needs at least 4 classes, the model has {num_classes}: "
                          "using targeted cross-entropy", DLRFallbackWarning, stacklevel=4)
            return "ce"
        return "dlr"
