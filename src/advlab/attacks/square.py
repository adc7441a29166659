"""Square attack (Andriushchenko, Croce, Flammarion & Hein 2020): score-based, forward passes only.

Random search over the eps-ball. Each example keeps its best point x_best and, at every
iteration, proposes a change confined to one random square window of side s (Sec. 3):

- L-inf (Alg. 2): the window is set to +-eps per channel (one sign per channel), vertices of the
  ball (exactly the interval's ends x - eps or x + eps, clipped to the box); the start puts
  +-eps on vertical stripes (one sign per column and channel).
- L2 (Alg. 3, Sec. 3.2): mass eta (concentric rectangles weighted 1/(k+1)^2, one half negated)
  is moved into window 1 from window 2, keeping ||delta||_2 = eps; the start tiles eta over a
  5 x 5 grid of blocks with random signs.

The proposal replaces x_best when it lowers the loss (margin z_y - max_{k!=y} z_k, or -CE;
targeted: CE to the target, success when the target wins), or when it is adversarial. The
window side follows p(i) * n_features (p halves at iterations 10, 50, 200, 500, 1000, 2000,
4000, 6000, 8000; `rescale_schedule` stretches the schedule to the query budget as the reference
code's default does; AutoAttack's standard version runs it unstretched).

Each example stops at its first success; `extra["queries"]` counts its forward passes (the start
included, at most `queries` per restart).

Budget where it pays (off by default; `discard_after` > 0, after Liu et al. 2022's discarding of
points that will not fall): at the checkpoints c = `discard_after` * 2^k below `queries`, an
example whose best margin m_c (z_y - max_{k!=y} z_k) is above both `discard_ratio` * m_1 (its
margin at the start) and `discard_factor` * (m_{c/2} - m_c) (its fall since query c/2) stops
unbroken: at its pace it would not reach 0 within `discard_factor` more doublings of its queries.
`extra["discarded"]` marks them; `extra["flat"]` marks the examples whose margin never fell below
its start value (scores blind to the windows tried: saturated or quantised outputs).

`restarts` > 1 runs the search again, from a new start with new draws (numbered on from the previous restart's), on the examples still unbroken (the
reference code's `n_restarts`). The model is never differentiated: everything runs under no_grad.
Random windows and signs are a function of (seed, example index, iteration), so results do not
depend on the batch size; they are drawn for blocks of 64 iterations at once, and the running
examples' state is compacted when some stop (no gathers or scatters per iteration). Inputs of any shape (N, C, H, W), (N, H, W) or (N, D) (read as one
row: windows become segments). Departures from the reference code: window positions per example
(not one per batch) and the last position is reachable; the reference code runs one query more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks.base import FixedBudgetAttack, Perturbed
from advlab.attacks.geometry import LinfBall, Rows, per_example
from advlab.attacks.losses import margin as margin_objective
from advlab.attacks.randomness import counter_sign, counter_uniform_draws
from advlab.errors import InputError
from advlab.validation import Bounds, check_count

LOSSES = ("margin", "ce")
_SIGN, _TRANSPOSE, _POSITION = 0, 1, 2  # random streams (positions use 2..5)
_BLOCK = 64  # iterations whose random numbers are drawn in one vectorised pass
_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256))


def square_fraction(iteration: int, p_init: float) -> float:
    """p(i): the share of the image a window covers at iteration i (Sec. 3, App. A)."""
    for limit, divisor in _SCHEDULE:
        if iteration <= limit:
            return p_init / divisor
    return p_init / 512


def _grid(shape: torch.Size) -> tuple[int, int, int]:
    """(channels, height, width) of one example."""
    if len(shape) == 3:
        return int(shape[0]), int(shape[1]), int(shape[2])
    if len(shape) == 2:
        return 1, int(shape[0]), int(shape[1])
    return 1, 1, math.prod(shape)


def _rectangles(rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Concentric rectangles centred in a rows x cols window, ring k weighted 1/(k+1)^2."""
    out = torch.zeros(rows, cols, dtype=dtype, device=device)
    r0, c0 = rows // 2, cols // 2
    for k in range(max(r0 + 1, c0 + 1)):
        out[max(r0 - k, 0) : min(r0 - k + 2 * k + 1, rows), max(c0 - k, 0) : min(c0 - k + 2 * k + 1, cols)] += 1.0 / (k + 1) ** 2
    return out


def eta(rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The L2 update pattern of Sec. 3.2: upper half positive rectangles, lower half negative, unit L2 norm."""
    pattern = torch.cat([_rectangles(rows // 2, cols, dtype, device), -_rectangles(rows - rows // 2, cols, dtype, device)])
    return pattern / pattern.norm().clamp_min(1e-12)


@dataclass
class _Search(Rows):
    """Per-example state of the search, one row per example still running."""

    slot: torch.Tensor  # row of this example in the batch
    index: torch.Tensor  # its global index (for the random draws)
    image: torch.Tensor  # (n, c, h, w)
    low: torch.Tensor  # the eps-ball ∩ box as coordinate intervals (L-inf)
    high: torch.Tensor
    goal: torch.Tensor
    best: torch.Tensor
    margin: torch.Tensor
    loss: torch.Tensor
    start: torch.Tensor  # margin at the start (query 1)
    mark: torch.Tensor  # margin at the last query c/2 (the discard rule's reference)


def discard_checks(discard_after: int, queries: int) -> dict[int, bool]:
    """Query counts at which the discard rule reads the margins: c/2 (False: remember the margin)
    and c (True: apply the rule, then remember) for c = discard_after * 2^k < queries."""
    out: dict[int, bool] = {}
    c = discard_after
    while discard_after and c < queries:
        out.setdefault(c // 2, False)
        out[c] = True
        c *= 2
    return out


class Square(FixedBudgetAttack):
    """Square attack under L-inf or L2, `queries` forward passes per example at most."""

    name = "square"

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float,
        norm: str = "linf",
        queries: int = 5000,
        p_init: float = 0.8,
        loss: str = "margin",
        rescale_schedule: bool = True,
        restarts: int = 1,
        discard_after: int = 0,
        discard_factor: float = 4.0,
        discard_ratio: float = 0.3,
        bounds: Bounds = (0.0, 1.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, bounds=bounds, **kwargs)
        self.queries = check_count("queries", queries)
        self.p_init = float(p_init)
        if not 0 < self.p_init <= 1:
            raise InputError(f"p_init must lie in (0, 1], got {p_init}")
        if loss not in LOSSES:
            raise InputError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        self.loss = loss
        self.rescale_schedule = bool(rescale_schedule)
        self.restarts = check_count("restarts", restarts)
        self.discard_after = check_count("discard_after", discard_after, minimum=0)
        if self.discard_after == 1:
            raise InputError("discard_after must be 0 (never discard) or at least 2 queries")
        self.discard_factor = float(discard_factor)
        self.discard_ratio = float(discard_ratio)
        if not (math.isfinite(self.discard_factor) and self.discard_factor >= 0 and 0 <= self.discard_ratio <= 1):
            raise InputError(f"discard_factor must be a finite number >= 0 and discard_ratio lie in [0, 1], got {discard_factor}, {discard_ratio}")
        self._proposal = PROPOSALS[self.geometry.name]

    # ---- the search ---------------------------------------------------------------------------
    @torch.no_grad()
    def _perturb(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool, indices: torch.Tensor) -> Perturbed:
        """`restarts` searches, each on the examples the ones before left unbroken (and counting their queries)."""
        found = self._search(x, goal, targeted, indices, 0)
        out, extra = found.x_adv, found.extra
        for restart in range(1, self.restarts if self.eps > 0 else 1):
            with torch.no_grad():
                todo = (~self.is_adversarial(self.logits(self.constrain(x, out)), goal, targeted)).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            again = self._search(x[todo], goal[todo], targeted, indices[todo.cpu()], restart * self.queries)
            out[todo] = again.x_adv
            extra["queries"][todo] += again.extra["queries"]
            extra["discarded"][todo], extra["flat"][todo] = again.extra["discarded"], again.extra["flat"]
        return Perturbed(out, extra=extra)

    def _search(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool, indices: torch.Tensor, offset: int) -> Perturbed:
        """One search of `queries` forward passes; its random draws are numbered from `offset`."""
        queries = torch.ones(x.shape[0], dtype=torch.long, device=x.device)
        discarded = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        flat = torch.zeros_like(discarded)
        extra = {"queries": queries, "discarded": discarded, "flat": flat}
        if self.eps == 0:
            return Perturbed(x.clone(), extra=extra)
        c, h, w = _grid(x.shape[1:])
        image = x.reshape(-1, c, h, w)
        out = self._start(image, indices, offset)
        margin, loss = self._margin_loss(out, goal, targeted, x.shape)
        low, high = LinfBall.interval(image, torch.full_like(margin, self.eps), self.bounds)
        run = _Search(torch.arange(x.shape[0], device=x.device), indices.to(x.device), image, low, high, goal, out, margin, loss,
                      margin, margin)
        draws: dict[str, torch.Tensor] = {}
        checks = discard_checks(self.discard_after, self.queries)
        for i in range(1, self.queries):
            leave = done = run.margin <= 0
            if checks.get(i):  # the discard rule's checkpoint
                stop = ~done & self._will_not_fall(run)
                discarded[run.slot[stop]], flat[run.slot[stop]] = True, run.margin[stop] >= run.start[stop]
                leave = done | stop
            if bool(leave.any()):  # early exit: out and queries are final for these examples
                out[run.slot[leave]], queries[run.slot[leave]] = run.best[leave], i
                keep = (~leave).nonzero().squeeze(1)
                if keep.numel() == 0:
                    return Perturbed(out.reshape(x.shape), extra=extra)
                run, draws = run.take(keep), {k: v[keep] for k, v in draws.items()}
            if i in checks:
                run.mark = run.margin
            if (i - 1) % _BLOCK == 0:
                draws = self._draws(run.index, range(offset + i, offset + min(i + _BLOCK, self.queries)), c, x.device)
            p = square_fraction(int((i - 1) / self.queries * 10000) if self.rescale_schedule else i - 1, self.p_init)
            step = {k: v[:, (i - 1) % _BLOCK] for k, v in draws.items()}
            candidate = self._proposal.step(self, run, step, p)
            new_margin, new_loss = self._margin_loss(candidate, run.goal, targeted, x.shape)
            improved = new_loss < run.loss
            run.loss = torch.where(improved, new_loss, run.loss)
            improved |= new_margin <= 0
            run.margin = torch.where(improved, new_margin, run.margin)
            run.best = torch.where(per_example(improved, candidate), candidate, run.best)
        out[run.slot], queries[run.slot] = run.best.clone(), self.queries  # a copy: with one query, best is still a view of x
        flat[run.slot] = run.margin >= run.start
        return Perturbed(out.reshape(x.shape), extra=extra)

    def _will_not_fall(self, run: _Search) -> torch.Tensor:
        """The discard rule (module docstring), per running example."""
        return (run.margin > self.discard_ratio * run.start) & (run.margin > self.discard_factor * (run.mark - run.margin))

    def _margin_loss(self, image: torch.Tensor, goal: torch.Tensor, targeted: bool, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        """(margin, loss): success when margin <= 0; the search lowers loss."""
        logits = self.logits(image.reshape(-1, *shape[1:]))
        margin = -margin_objective(logits, goal, targeted)
        if targeted:
            return margin, F.cross_entropy(logits, goal, reduction="none")
        return margin, margin if self.loss == "margin" else -F.cross_entropy(logits, goal, reduction="none")

    # ---- starts and proposals -------------------------------------------------------------------
    def _start(self, image: torch.Tensor, index: torch.Tensor, draw: int) -> torch.Tensor:
        return self._proposal.start(self, image, index, draw)

    def _linf_start(self, image: torch.Tensor, index: torch.Tensor, draw: int) -> torch.Tensor:
        """Vertical stripes of +-eps (Sec. 3.1)."""
        n, c, h, w = image.shape
        stripes = counter_sign(self.seed, index, draw, c * w, image.dtype, device=image.device).view(n, c, 1, w)
        return self.geometry.project(image, image + self.eps * stripes, self.eps, self.bounds)

    def _l2_start(self, image: torch.Tensor, index: torch.Tensor, draw: int) -> torch.Tensor:
        """A grid of eta-shaped blocks with random signs, scaled to norm eps (Sec. 3.2)."""
        n, c, h, w = image.shape
        rows, cols = max(h // 5, 1), max(w // 5, 1)
        blocks_h, blocks_w = h // rows, w // cols
        signs = counter_sign(self.seed, index, draw, blocks_h * blocks_w * c, image.dtype, device=image.device).view(n, c, blocks_h, blocks_w)
        tile = eta(rows, cols, image.dtype, image.device)
        delta = torch.zeros_like(image)
        top, left = (h - rows * blocks_h) // 2, (w - cols * blocks_w) // 2
        grid = signs.repeat_interleave(rows, 2).repeat_interleave(cols, 3) * tile.repeat(blocks_h, blocks_w)
        delta[:, :, top : top + rows * blocks_h, left : left + cols * blocks_w] = grid
        return self._l2_point(image, delta)

    def _window(self, p: float, c: int, h: int, w: int, *, l2: bool) -> tuple[int, int]:
        """Window (rows, cols) covering about a share p of each channel; a segment when h = 1."""
        if h == 1:
            return 1, min(max(round(p * w), 3 if l2 else 1), w)
        side = max(round(math.sqrt(p * h * w)), 3 if l2 else 1)
        side += l2 and side % 2 == 0
        return min(side, h, w), min(side, h, w)

    def _draws(self, index: torch.Tensor, steps: range, c: int, device: torch.device) -> dict[str, torch.Tensor]:
        """The random numbers of iterations `steps` for the examples `index`, (N, len(steps), ...):
        window corners (uniforms, scaled to the window size of each iteration) and channel signs;
        for L2 also the second window and the transpose. Iteration i uses draw i of each stream."""
        def uniforms(count: int, stream: int) -> torch.Tensor:
            return counter_uniform_draws(self.seed, index, steps, count, stream=stream, device=device)

        slots = self._proposal.windows
        out = {f"corner{k}": uniforms(1, _POSITION + k).squeeze(2) for k in range(2 * slots)}
        out["sign"] = torch.where(uniforms(c, 0) < 0.5, -1.0, 1.0)
        if slots == 2:  # L2 moves mass between two windows, with a random transpose of the pattern
            out["transpose"] = uniforms(1, _TRANSPOSE).squeeze(2) < 0.5
        return out

    @staticmethod
    def _corner(step: dict[str, torch.Tensor], slot: int, h: int, w: int, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-left corner of window `slot`, uniform over the positions where it fits."""
        top = (step[f"corner{2 * slot}"] * (h - rows + 1)).floor().long()
        left = (step[f"corner{2 * slot + 1}"] * (w - cols + 1)).floor().long()
        return top, left

    @staticmethod
    def _spans(top: torch.Tensor, left: torch.Tensor, rows: int, cols: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per example, the window's rows (n, h) and columns (n, w) as booleans."""
        r = torch.arange(h, device=top.device)
        q = torch.arange(w, device=top.device)
        return (r >= top[:, None]) & (r < top[:, None] + rows), (q >= left[:, None]) & (q < left[:, None] + cols)

    @classmethod
    def _mask(cls, top: torch.Tensor, left: torch.Tensor, rows: int, cols: int, h: int, w: int) -> torch.Tensor:
        in_rows, in_cols = cls._spans(top, left, rows, cols, h, w)
        return (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)  # (n, 1, h, w)

    @classmethod
    def _window_weights(cls, top: torch.Tensor, left: torch.Tensor, rows: int, cols: int, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
        """`_mask` as 0/1 floats, an outer product: an image-sized boolean `where` costs several
        times a float multiply on the CPU."""
        in_rows, in_cols = (span.to(dtype) for span in cls._spans(top, left, rows, cols, h, w))
        return (in_rows[:, :, None] * in_cols[:, None, :]).unsqueeze(1)

    def _linf_step(self, run: _Search, step: dict[str, torch.Tensor], p: float) -> torch.Tensor:
        n, c, h, w = run.image.shape
        rows, cols = self._window(p, c, h, w, l2=False)
        window = self._window_weights(*self._corner(step, 0, h, w, rows, cols), rows, cols, h, w, run.image.dtype)
        signs = step["sign"].to(run.image.dtype).view(n, c, 1, 1)
        # outside the window best + 0 = best; inside, a move of 4 eps overshoots the interval whichever
        # end best is at, so the clamp lands exactly on its end low or high (2 eps could stop an ulp short:
        # a point no other batching reaches): every coordinate stays exactly a vertex of ball ∩ box
        return torch.clamp(run.best + ((4 * self.eps) * signs) * window, run.low, run.high)

    def _l2_step(self, run: _Search, step: dict[str, torch.Tensor], p: float) -> torch.Tensor:
        image, best = run.image, run.best
        n, c, h, w = image.shape
        rows, cols = self._window(p, c, h, w, l2=True)
        top1, left1 = self._corner(step, 0, h, w, rows, cols)
        top2, left2 = self._corner(step, 1, h, w, rows, cols)
        mask1, mask2 = self._mask(top1, left1, rows, cols, h, w), self._mask(top2, left2, rows, cols, h, w)
        delta = best - image
        window1 = delta[mask1.expand_as(delta)].view(n, c, rows, cols)
        norm_window1 = window1.flatten(2).norm(dim=2).view(n, c, 1, 1)
        norm_image = delta.flatten(1).norm(dim=1).view(n, 1, 1, 1)
        norm_windows = (delta * (mask1 | mask2)).flatten(2).norm(dim=2).view(n, c, 1, 1)
        pattern = eta(rows, cols, image.dtype, image.device).expand(n, c, rows, cols)
        if rows == cols:  # a random transpose per example
            pattern = torch.where(step["transpose"].view(n, 1, 1, 1), pattern.transpose(2, 3), pattern)
        new = pattern * step["sign"].to(image.dtype).view(n, c, 1, 1)
        new = new + window1 / (norm_window1 + 1e-12)
        budget = ((self.eps**2 - norm_image**2).clamp_min(0) / c + norm_windows**2).sqrt()
        new = new / (new.flatten(2).norm(dim=2).view(n, c, 1, 1) + 1e-12) * budget
        delta = delta.masked_fill(mask2, 0.0)
        delta = delta.masked_scatter(mask1.expand_as(delta), new)
        return self._l2_point(image, delta)

    # ---- feasibility ----------------------------------------------------------------------------
    def _l2_point(self, image: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """x + eps delta / ||delta||_2, clipped to the box (so ||x' - x||_2 <= eps)."""
        length = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        return (image + delta / (length + 1e-12) * self.eps).clamp(*self.bounds)


@dataclass(frozen=True)
class Proposal:
    """What Square does under one norm: its start, its random step, and how many windows a step draws."""

    start: Callable[[Square, torch.Tensor, torch.Tensor, int], torch.Tensor]
    step: Callable[[Square, _Search, dict[str, torch.Tensor], float], torch.Tensor]
    windows: int


PROPOSALS = {
    "linf": Proposal(Square._linf_start, Square._linf_step, 1),
    "l2": Proposal(Square._l2_start, Square._l2_step, 2),
}
