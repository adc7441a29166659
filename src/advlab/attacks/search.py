"""The bookkeeping iterative attacks share: early exit, best-so-far, and the weight search.

- `ActiveSet`: the examples of a batch still being worked on. An example that is finished
  (e.g. adversarial) is written into the output and leaves, so later iterations run on the
  rest only (the evaluation mode of PGD, DeepFool, MinPGD).
- `BestSoFar`: per example the best candidate offered so far under a score (lower is better),
  with any per-example values recorded alongside (e.g. the c it was found with).
- `WeightSearch`: per-example search over the weight w of a penalty objective
  w * ||r||^2 + loss (Szegedy et al. 2013, Sec. 4.1; L-BFGS and the penalty attack): multiply
  (success) or divide (failure) by `factor` until both a success and a failure are seen, then
  bisect geometrically between the largest success and the smallest failure. Carlini &
  Wagner's search over c, whose weight sits on the loss, is the same with the roles swapped.
- `exceeds`: a loss comparison that reads rounding-level differences as ties.
"""

from __future__ import annotations

import torch

from advlab.attacks.geometry import per_example

RTOL = 1e-4  # a weight search is settled once its bracket is this tight: fail / success <= 1 + RTOL


def tie_tolerance(dtype: torch.dtype) -> float:
    """eps^(3/4) of the dtype: 1.8e-12 in float64, 6.4e-6 in float32 (thousands and tens of ulps)."""
    return torch.finfo(dtype).eps ** 0.75


def exceeds(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a > b beyond rounding: a - b > tol (1 + |b|), tol = `tie_tolerance` of the dtype.

    The same point evaluated in a batch of another shape (or with other kernels) gives a loss a
    few ulps off. An iterative attack revisits points (under L-inf its iterates sit on the
    ball's vertices), so a strict `>` would count such a pair as a rise or an improvement in one
    batching and not in another, and its decisions would depend on the batching.
    """
    return a - b > tie_tolerance(a.dtype) * (1 + b.abs())


class ActiveSet:
    """Positions (into the batch) of the examples still active; finished ones go to `out`."""

    def __init__(self, out: torch.Tensor) -> None:
        self.out = out
        self.index = torch.arange(out.shape[0], device=out.device)

    def retire(self, done: torch.Tensor, values: torch.Tensor) -> torch.Tensor | None:
        """Write values[done] (rows of the active examples) to `out` and drop them.

        Returns the positions, among the active rows, of those that stay (to index the
        caller's per-example tensors with), or None when none left. One host sync.
        """
        keep = (~done).nonzero().squeeze(1)
        if keep.numel() == self.index.numel():
            return None
        finished = done.nonzero().squeeze(1)
        self.out[self.index[finished]] = values[finished]
        self.index = self.index[keep]
        return keep

    @property
    def empty(self) -> bool:
        return self.index.numel() == 0

    def finish(self, values: torch.Tensor) -> torch.Tensor:
        """Write the remaining examples' values and return the full output."""
        self.out[self.index] = values
        return self.out


class BestSoFar:
    """Per example, the candidate with the lowest score offered so far (and values recorded with it)."""

    def __init__(self, initial: torch.Tensor, score: torch.Tensor, **values: torch.Tensor) -> None:
        self.x = initial.clone()
        self.score = score.clone()
        self.values = {k: v.clone() for k, v in values.items()}

    def offer(
        self,
        candidate: torch.Tensor,
        score: torch.Tensor,
        allowed: torch.Tensor | None = None,
        index: torch.Tensor | None = None,
        **values: torch.Tensor,
    ) -> torch.Tensor:
        """Keep candidate rows that score lower (and are `allowed`); `index`: the rows offered,
        when not all. Returns the mask of rows taken."""
        current = self.score if index is None else self.score[index]
        better = score < current
        if allowed is not None:
            better &= allowed
        picked = torch.where(per_example(better, candidate), candidate, self.x if index is None else self.x[index])
        if index is None:
            self.x, self.score = picked, torch.where(better, score, self.score)
        else:
            self.x[index], self.score[index] = picked, torch.where(better, score, current)
        for key, value in values.items():
            old = self.values[key] if index is None else self.values[key][index]
            new = torch.where(better, value, old)
            if index is None:
                self.values[key] = new
            else:
                self.values[key][index] = new
        return better


class WeightSearch:
    """Bracketing, then bisection in log w, for a batch of weights at once (no host syncs)."""

    def __init__(self, initial: torch.Tensor, *, factor: float = 10.0) -> None:
        self.weight = initial.clone()
        self.factor = factor
        self.best_success = torch.zeros_like(initial)  # largest w that succeeded (0: none yet)
        self.first_failure = torch.full_like(initial, torch.inf)  # smallest w that failed

    def update(self, success: torch.Tensor) -> None:
        """Record which examples succeeded at the current weights and choose the next ones."""
        self.best_success = torch.where(success, self.best_success.maximum(self.weight), self.best_success)
        self.first_failure = torch.where(success, self.first_failure, self.first_failure.minimum(self.weight))
        bracketed = (self.best_success > 0) & torch.isfinite(self.first_failure)
        middle = (self.best_success * self.first_failure.nan_to_num(posinf=1.0)).sqrt()
        grown = torch.where(success, self.weight * self.factor, self.weight / self.factor)
        self.weight = torch.where(bracketed, middle, grown)

    def settled(self) -> torch.Tensor:
        """Examples whose bracket is tighter than RTOL."""
        return (self.best_success > 0) & (self.first_failure <= self.best_success * (1 + RTOL))
