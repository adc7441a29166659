"""Adaptive APGD: the budget spent where it pays (after Liu et al. 2022, "Practical Evaluation of
Adversarial Robustness via Adaptive Auto Attack", CVPR, Sec. 3.3: discard the points whose loss
statistics say they will not fall, spend the iterations saved on the others).

Per example, untargeted (any misclassification counts), on the points still robust at each stage:

1. **Probe run.** APGD-T (targeted DLR, `steps` iterations) on the first of the `targets` classes
   of `target_ranking` (MALT by default, `advlab.attacks.targeting`). While it runs we record, per
   example, from the logits and gradients the run computes anyway (no extra pass):
   - the scale-free margin m = (z_y - max_{j != y} z_j) / (z_pi1 - z_pi3) (the negated untargeted
     DLR; in (0, 1] while robust, <= 0 once broken), its smallest value over the run;
   - `dead`: the loss gradient at the start is zero or not finite in the dual norm;
   - `stuck`: the best loss never rose above the start's (beyond rounding, `search.exceeds`);
   - `erratic`: the loss fell at more than half of the steps (APGD's steps raise it most of the time);
   - `stalled`: the best loss of the second half of the run is not above that of the first half.
2. **Classify.** `flagged` (masked-looking gradients) = dead | stuck | erratic. `discarded` (will not
   fall) = not flagged, stalled, and smallest m > `discard_margin`. `close` = smallest m <
   `close_margin`.
3. **More targets** for every point neither discarded nor broken: APGD-T on targets 2..`targets`
   of the ranking, one run each (start number k for target k).
4. **More restarts** for the flagged and the close points: `restarts` further APGD-T runs from new
   random starts (numbers `targets`, `targets` + 1, ...), cycling over the ranked targets.
5. **Square** (`queries` forward passes, AutoAttack's standard settings) on the flagged points only:
   a score-based attack cannot be misled by the gradients the checks found masked.

Every stage has the early exit of its attack. Every quantity above is per example and every
random draw comes from (seed, example index, start number), so results do not depend on the
batch. `extra` reports per example `flagged`, `discarded` and `margin` (the smallest m seen).
A caller's target (targeted call) runs APGD's targeted cross-entropy with `restarts` + 1 starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from advlab.attacks.apgd import APGDT, _Run
from advlab.attacks.base import Perturbed
from advlab.attacks.losses import margin
from advlab.attacks.search import exceeds
from advlab.attacks.square import Square
from advlab.attacks.targeting import rank_targets
from advlab.errors import InputError
from advlab.validation import check_count


@dataclass
class _Record:
    """What the probe run says about each example of the batch (tensors of length B)."""

    margin: torch.Tensor  # smallest scale-free margin seen (any stage)
    dead: torch.Tensor
    start_loss: torch.Tensor
    last_loss: torch.Tensor
    best_first: torch.Tensor  # best loss over iterations 0..steps/2
    best_second: torch.Tensor  # best loss over the later iterations
    falls: torch.Tensor
    probing: bool = True


def scale_free_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3) (z_pi2 with two classes): in (0, 1] where y wins."""
    top = logits.sort(dim=1, descending=True).values
    scale = top[:, 0] - top[:, min(2, logits.shape[1] - 1)]
    return -margin(logits, y, False) / scale.clamp_min(torch.finfo(logits.dtype).tiny)


class AdaptiveAPGD(APGDT):
    """APGD-T with per-example budget allocation from its own loss trajectory (module docstring)."""

    name = "apgd-a"
    norms = ("linf", "l2")  # Square, the last stage, has no L1 version

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float,
        norm: str = "linf",
        steps: int = 100,
        targets: int = 5,
        restarts: int = 2,
        queries: int = 5000,
        target_ranking: str = "malt",
        discard_margin: float = 0.5,
        close_margin: float = 0.1,
        rho: float = 0.75,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, steps=steps, restarts=max(restarts, 1), rho=rho, targets=targets,
                         target_ranking=target_ranking, **kwargs)
        self.restarts = check_count("restarts", restarts, minimum=0)
        self.queries = check_count("queries", queries)
        for name, value in (("discard_margin", discard_margin), ("close_margin", close_margin)):
            if not 0 <= value <= 1:
                raise InputError(f"{name} must lie in [0, 1] (a scale-free margin), got {value}")
        self.discard_margin, self.close_margin = float(discard_margin), float(close_margin)
        self._square = Square(model, eps=eps, norm=norm, queries=self.queries, p_init=0.8, rescale_schedule=False,
                              bounds=self.bounds, seed=self.seed, batch_size=self.batch_size, progress=False)
        self._record: _Record | None = None
        self._rows = torch.zeros(0, dtype=torch.long)  # batch rows of the run in progress
        self._iteration = 0  # of the probe run

    def _loss_grad(self, state: _Run, objective: str, targeted: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """APGD's loss and gradient, with the statistics of the module docstring recorded on the way."""
        loss, grad, logits = super()._loss_grad(state, objective, targeted)
        record = self._record
        if record is not None:
            rows = self._rows[state.slot]
            record.margin[rows] = torch.minimum(record.margin[rows], scale_free_margin(logits, state.y))
            if record.probing:
                self._probe_step(record, rows, loss, grad)
        return loss, grad, logits

    def _probe_step(self, record: _Record, rows: torch.Tensor, loss: torch.Tensor, grad: torch.Tensor) -> None:
        first = torch.isnan(record.start_loss[rows])  # every row of a call is at the same iteration
        if bool(first.all()):
            size = self.geometry.dual(grad)
            record.dead[rows] = (size == 0) | ~torch.isfinite(size)
            record.start_loss[rows] = record.last_loss[rows] = record.best_first[rows] = loss
            self._iteration = 0
            return
        self._iteration += 1
        record.falls[rows] += (record.last_loss[rows] - loss > 0).long()
        record.last_loss[rows] = loss
        if self._iteration <= self.steps // 2:
            record.best_first[rows] = torch.maximum(record.best_first[rows], loss)
        else:
            record.best_second[rows] = torch.maximum(record.best_second[rows], loss)

    def _perturb(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool, indices: torch.Tensor) -> Perturbed:
        if targeted:
            self.restarts, restarts = self.restarts + 1, self.restarts
            try:
                return super()._perturb(x, goal, True, indices)
            finally:
                self.restarts = restarts
        index = indices.to(x.device)
        with torch.no_grad():
            clean_logits = self.logits(x)
        n, classes = clean_logits.shape
        out = x.clone()
        robust = clean_logits.argmax(1) == goal
        flagged = torch.zeros(n, dtype=torch.bool, device=x.device)
        discarded = torch.zeros_like(flagged)
        nan = torch.full((n,), float("nan"), dtype=x.dtype, device=x.device)
        record = _Record(margin=scale_free_margin(clean_logits, goal), dead=torch.zeros_like(flagged), start_loss=nan,
                         last_loss=nan.clone(), best_first=nan.clone(), best_second=torch.full_like(nan, float("-inf")),
                         falls=torch.zeros(n, dtype=torch.long, device=x.device))
        if self.eps == 0 or not bool(robust.any()):
            return Perturbed(out, clean_logits=clean_logits, extra={"flagged": flagged, "discarded": discarded, "margin": record.margin})
        count = min(self.targets, classes - 1)
        ranked = torch.zeros((n, count), dtype=torch.long, device=x.device)
        open_rows = robust.nonzero().squeeze(1)
        ranked[open_rows] = rank_targets(self, x[open_rows], count, self.target_ranking, logits=clean_logits[open_rows])
        objective = self._objective(classes, True)
        self._record = record
        try:
            self._pass(x, goal, ranked[:, 0], index, 0, objective, robust, robust.clone(), out)
            record.probing = False
            stalled = ~exceeds(record.best_second, record.best_first)
            stuck = ~exceeds(torch.maximum(record.best_first, record.best_second), record.start_loss)
            erratic = record.falls * 2 > self.steps
            flagged = robust & (record.dead | stuck | erratic)
            discarded = robust & ~flagged & stalled & (record.margin > self.discard_margin)
            for k in range(1, count):
                self._pass(x, goal, ranked[:, k], index, k, objective, robust, robust & ~discarded, out)
            close = flagged | (record.margin < self.close_margin)
            for r in range(self.restarts):
                self._pass(x, goal, ranked[:, r % count], index, count + r, objective, robust, robust & close, out)
        finally:
            self._record = None
        todo = (robust & flagged).nonzero().squeeze(1)
        if todo.numel():
            found = self._square._perturb(x[todo], goal[todo], False, indices[todo.cpu()]).x_adv
            with torch.no_grad():
                hit = self.logits(found).argmax(1) != goal[todo]
            out[todo[hit]] = found[hit]
        return Perturbed(out, clean_logits=clean_logits, extra={"flagged": flagged, "discarded": discarded, "margin": record.margin})

    def _pass(self, x: torch.Tensor, goal: torch.Tensor, target: torch.Tensor, index: torch.Tensor, number: int,
              objective: str, robust: torch.Tensor, chosen: torch.Tensor, out: torch.Tensor) -> None:
        """One APGD-T run towards `target` on the chosen points still robust; updates out and robust."""
        rows = (robust & chosen).nonzero().squeeze(1)
        if rows.numel() == 0:
            return
        self._rows = rows
        point, _, broken = self.run(x[rows], goal[rows], target[rows], self._start(x[rows], index[rows], number), objective)
        out[rows[broken]] = point[broken]
        robust[rows[broken]] = False


class TracedAPGD(APGDT):
    """APGD-T that records, per iteration, the loss of every point still running (for the
    convergence check of Carlini et al. 2019, Sec. 4.4: the attack's loss over iterations)."""

    name = "apgd-traced"  # not registered: an instrument, not an attack of the suites

    def _loss_grad(self, state: _Run, objective: str, targeted: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loss, grad, logits = super()._loss_grad(state, objective, targeted)
        self.trace.append((self._rows[state.slot], loss))
        return loss, grad, logits

    def loss_curve(self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor) -> list[float]:
        """Mean over the points of the best loss so far after each iteration, one APGD-T run on
        the first ranked target (a point that breaks keeps its last best loss)."""
        self.trace: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._rows = torch.arange(len(x), device=x.device)
        with torch.no_grad():
            classes = self.logits(x[:1]).shape[1]
        target = rank_targets(self, x, 1, self.target_ranking)[:, 0]
        self.run(x, y, target, self._start(x, indices.to(x.device), 0), self._objective(classes, True))
        losses = torch.full((len(x), len(self.trace)), float("nan"), dtype=x.dtype, device=x.device)
        for i, (rows, loss) in enumerate(self.trace):
            losses[rows, i] = loss
        for i in range(1, losses.shape[1]):  # forward-fill the points that left, then best so far
            losses[:, i] = torch.where(torch.isnan(losses[:, i]), losses[:, i - 1], losses[:, i])
        return losses.cummax(dim=1).values.mean(0).tolist()
