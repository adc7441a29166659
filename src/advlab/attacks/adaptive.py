"""Adaptive APGD: the budget spent where it pays (after Liu et al. 2022, "Practical Evaluation of
Adversarial Robustness via Adaptive Auto Attack", CVPR, Sec. 3.3: discard the points whose loss
statistics say they will not fall, spend the iterations saved on the others).

Per example, untargeted (any misclassification counts), on the points still robust at each stage:

0. **Dead check.** One forward and one backward pass at the probe run's random start, towards the
   first of the `targets` classes of `target_ranking` (MALT by default,
   `advlab.attacks.targeting`): `dead` where the loss gradient there is zero or not finite in the
   dual norm. APGD cannot move from such a start (its step is a function of the gradient), so a
   dead point gets no white-box run at all and goes straight to Square (stage 5).
1. **Probe run.** APGD-T (targeted DLR, `steps` iterations) on that first target, for the points
   not dead. While it runs we record, per example, from the logits and gradients the run computes
   anyway (no extra pass):
   - the scale-free margin m = (z_y - max_{j != y} z_j) / (z_pi1 - z_pi3) (the negated untargeted
     DLR; in (0, 1] while robust, <= 0 once broken), its smallest value over the run;
   - `stuck`: the best loss never rose above the start's (beyond rounding, `search.exceeds`);
   - `erratic`: the loss fell at more than half of the steps (APGD's steps raise it most of the time);
   - `stalled`: the best loss of the second half of the run is not above that of the first half.
2. **Classify.** `flagged` (masked-looking gradients) = dead | stuck | erratic. `discarded` (will not
   fall) = not flagged, stalled, and smallest m > `discard_margin`. `close` = smallest m <
   `close_margin`.
3. **More targets** for every point neither discarded, dead nor broken: APGD-T on targets
   2..`targets` of the ranking, one run each (start number k for target k).
4. **More restarts** for the flagged and the close points not dead: `restarts` further APGD-T runs
   from new random starts (numbers `targets`, `targets` + 1, ...), cycling over the ranked targets.
5. **Square** on the flagged points only (a score-based attack cannot be misled by the gradients
   the checks found masked): AutoAttack's settings, up to `queries` forward passes, with Square's
   discard rule from `square_checkpoint` queries on (`advlab.attacks.square`: at queries c =
   `square_checkpoint` * 2^k a point stops when its margin is above 0.3 times its start margin
   and above 4 times its fall since query c/2). A point whose margin never fell (`flat`: the
   scores do not see Square's windows, e.g. near one-hot outputs) gets `flat_restarts` more
   searches of `flat_queries` queries from fresh starts (draws numbered on from `queries`): on a
   flat loss only the start and the first, largest windows move the point at all.

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
        square_checkpoint: int = 500,
        flat_restarts: int = 10,
        flat_queries: int = 50,
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
        self.flat_restarts = check_count("flat_restarts", flat_restarts, minimum=0)
        shared = {"eps": eps, "norm": norm, "p_init": 0.8, "rescale_schedule": False, "bounds": self.bounds, "seed": self.seed,
                  "batch_size": self.batch_size, "progress": False}
        self._square = Square(model, queries=self.queries, discard_after=square_checkpoint, **shared)
        self._flat_square = Square(model, queries=flat_queries, **shared)
        self.square_checkpoint, self.flat_queries = self._square.discard_after, self._flat_square.queries
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
        record = _Record(margin=scale_free_margin(clean_logits, goal), start_loss=nan,
                         last_loss=nan.clone(), best_first=nan.clone(), best_second=torch.full_like(nan, float("-inf")),
                         falls=torch.zeros(n, dtype=torch.long, device=x.device))
        if self.eps == 0 or not bool(robust.any()):
            return Perturbed(out, clean_logits=clean_logits, extra={"flagged": flagged, "discarded": discarded, "margin": record.margin})
        count = min(self.targets, classes - 1)
        ranked = torch.zeros((n, count), dtype=torch.long, device=x.device)
        open_rows = robust.nonzero().squeeze(1)
        ranked[open_rows] = rank_targets(self, x[open_rows], count, self.target_ranking, logits=clean_logits[open_rows])
        objective = self._objective(classes, True)
        dead = self._dead_starts(x, goal, ranked[:, 0], index, objective, robust, out)
        self._record = record
        try:
            self._pass(x, goal, ranked[:, 0], index, 0, objective, robust, ~dead, out)
            record.probing = False
            stalled = ~exceeds(record.best_second, record.best_first)
            stuck = ~exceeds(torch.maximum(record.best_first, record.best_second), record.start_loss)
            erratic = record.falls * 2 > self.steps
            flagged = robust & (dead | stuck | erratic)
            discarded = robust & ~flagged & stalled & (record.margin > self.discard_margin)
            for k in range(1, count):
                self._pass(x, goal, ranked[:, k], index, k, objective, robust, ~discarded & ~dead, out)
            close = (flagged | (record.margin < self.close_margin)) & ~dead
            for r in range(self.restarts):
                self._pass(x, goal, ranked[:, r % count], index, count + r, objective, robust, close, out)
        finally:
            self._record = None
        self._black_box(x, goal, indices, robust & flagged, out)
        return Perturbed(out, clean_logits=clean_logits, extra={"flagged": flagged, "discarded": discarded, "margin": record.margin})

    def _dead_starts(self, x: torch.Tensor, goal: torch.Tensor, target: torch.Tensor, index: torch.Tensor, objective: str,
                     robust: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Per example, whether the loss gradient at the probe run's start (number 0) is zero or not
        finite (robust points only; a start that is already adversarial is kept as the witness and
        the point marked broken)."""
        dead = torch.zeros_like(robust)
        rows = robust.nonzero().squeeze(1)
        start = self._start(x[rows], index[rows], 0)
        _, grad, logits = self._loss_grad_at(start, goal[rows], target[rows], objective, True)
        size = self.geometry.dual(grad)
        hit = logits.argmax(1) != goal[rows]
        out[rows[hit]] = start.detach()[hit]
        robust[rows[hit]] = False
        dead[rows] = ((size == 0) | ~torch.isfinite(size)) & ~hit
        return dead

    def _black_box(self, x: torch.Tensor, goal: torch.Tensor, indices: torch.Tensor, chosen: torch.Tensor, out: torch.Tensor) -> None:
        """Square on the chosen points (stage 5), then the short searches on those whose margin stayed flat."""
        todo = chosen.nonzero().squeeze(1)
        if todo.numel() == 0:
            return
        found = self._square._perturb(x[todo], goal[todo], False, indices[todo.cpu()])
        flat = self._keep_hits(goal, todo, found.x_adv, out) & found.extra["flat"]
        for r in range(self.flat_restarts):
            todo = todo[flat]
            if todo.numel() == 0:
                return
            offset = self.queries + r * self.flat_queries
            again = self._flat_square._search(x[todo], goal[todo], False, indices[todo.cpu()], offset).x_adv
            flat = self._keep_hits(goal, todo, again, out)

    def _keep_hits(self, goal: torch.Tensor, rows: torch.Tensor, found: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Writes the adversarial points among `found` (for `rows`) into out; whether each row is still robust."""
        with torch.no_grad():
            hit = self.logits(found).argmax(1) != goal[rows]
        out[rows[hit]] = found[hit]
        return ~hit

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
