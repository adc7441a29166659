"""Which classes a targeted attack aims at: target selection as a strategy any attack can use.

`rank_targets(attack, x, count, ranking)` gives, per example, `count` other classes in the order
they should be tried (column 0 first), under a ranking:

- "confidence": the most likely other classes at x, by logit (AutoAttack's APGD-T and FAB-T;
  Croce & Hein 2020, Sec. 4);
- "malt": MALT's mesoscopic almost-linearity estimate (Melamed, Yehudai & Shamir 2024, "MALT
  Powers Up Adversarial Attacks", Sec. 3): if the logit gap f_j = z_y - z_j were linear near x,
  the smallest perturbation reaching the boundary with class j would have norm

      f_j(x) / ||grad_x f_j(x)||_*          (||.||_* the dual of the attack's norm),

  so the classes with the smallest estimate are tried first (y: the predicted class). The
  estimate is computed for the `MALT_CANDIDATES` most likely other classes (the paper's
  ImageNet setting; every class of a smaller model) with one forward pass and one backward
  pass per candidate over the whole batch.

Every quantity is per example, so the ranking does not depend on the batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from advlab.errors import InputError

if TYPE_CHECKING:
    from advlab.attacks.base import FixedBudgetAttack

RANKINGS = ("confidence", "malt")
MALT_CANDIDATES = 100  # other classes scored by MALT, the most likely first (Melamed et al. 2024, Sec. 4)


def check_ranking(ranking: str) -> str:
    if ranking not in RANKINGS:
        raise InputError(f"target_ranking must be one of {', '.join(RANKINGS)}, got {ranking!r}")
    return ranking


def rank_targets(
    attack: FixedBudgetAttack, x: torch.Tensor, count: int, ranking: str, logits: torch.Tensor | None = None
) -> torch.Tensor:
    """(N, count) target classes, to be tried in column order (count <= classes - 1); `logits`:
    the model's at x when already computed (saves the confidence ranking its forward pass)."""
    if ranking == "malt":
        return malt_targets(attack, x, count)
    if logits is None:
        with torch.no_grad():
            logits = attack.logits(x)
    ranked = logits.argsort(dim=1, descending=True)
    return ranked[:, 1 : count + 1]  # rank 0 is the prediction (the true class on the robust points)


def malt_targets(attack: FixedBudgetAttack, x: torch.Tensor, count: int) -> torch.Tensor:
    """The `count` classes of smallest MALT estimate (z_y - z_j) / ||grad_x (z_y - z_j)||_* among the
    `MALT_CANDIDATES` most likely other classes j (y the predicted class), smallest first: one
    forward pass, one backward pass per candidate."""
    z = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = attack.logits(z)
        if not logits.requires_grad:
            raise InputError("the model's output has no gradient with respect to its input")
        ranked = logits.detach().argsort(dim=1, descending=True)
        candidates = ranked[:, 1 : 1 + min(MALT_CANDIDATES, ranked.shape[1] - 1)]
        top = logits.gather(1, ranked[:, :1]).squeeze(1)
        scores = []
        for k in range(candidates.shape[1]):
            gap = top - logits.gather(1, candidates[:, k : k + 1]).squeeze(1)
            (grad,) = torch.autograd.grad(gap.sum(), z, retain_graph=k + 1 < candidates.shape[1])
            dual = attack.geometry.dual(grad)
            scores.append(gap.detach() / dual.clamp_min(torch.finfo(dual.dtype).tiny))
    order = torch.stack(scores, dim=1).argsort(dim=1, stable=True)
    return candidates.gather(1, order[:, :count])
