"""Attack objectives on logits, per example, and the choice of rival classes.

Every function takes logits z (N, C) and returns one value per example (N,). Sign convention:
the `*_objective` functions and `cross_entropy` are to be ASCENDED by an attack (larger = more
adversarial); `dlr`, `targeted_dlr` and `smooth_margin` follow their papers' signs, stated below.
Names here are a stable API (APGD, FAB and Square build on them).

- `cross_entropy(z, goal, targeted)`: CE(z, y) untargeted, -CE(z, t) targeted.
- `margin(z, goal, targeted)`: max_{k != y} z_k - z_y untargeted, z_t - max_{k != t} z_k
  targeted (Carlini & Wagner 2017's f6 without kappa, negated): positive exactly when the
  example is adversarial (ties aside).
- `dlr(z, y)`: the difference of logits ratio of Croce & Hein 2020 (Sec. 4.2),
  DLR = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3), pi the logits sorted decreasingly; it is
  invariant to shifting and rescaling the logits. Maximised by the untargeted attack.
- `targeted_dlr(z, y, t)`: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2) (Croce & Hein 2020,
  Sec. 4.2, targeted version); maximised towards t.
- `smooth_margin(z, goal, targeted, T)`: u, NEGATIVE when adversarial:
  M_{j != t} z_j - z_t (targeted) or z_y - M_{j != y} z_j (untargeted), M(v) = T logsumexp(v / T)
  the smooth maximum (Szegedy et al. 2013's penalty attacks minimise softplus(u)).
- `top_rivals(z, goal, k)`: the k classes other than goal with the highest logits.

`OBJECTIVES` maps a loss name to its ascent function (logits, goal, targeted) -> (N,).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

DLR_EPS = 1e-12  # keeps the DLR denominators positive (Croce & Hein's reference code)


def _goal_logit(logits: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    return logits.gather(1, goal.unsqueeze(1)).squeeze(1)


def _best_other(logits: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    return logits.scatter(1, goal.unsqueeze(1), float("-inf")).amax(1)


def cross_entropy(logits: torch.Tensor, goal: torch.Tensor, targeted: bool) -> torch.Tensor:
    """CE(z, y) untargeted, -CE(z, t) targeted: ascended by the attack.

    Written as softplus(logsumexp_{j != y} z_j - z_y): the value of F.cross_entropy, but its
    gradient on the goal logit is -sigmoid(u) rather than p_y - 1, which is exactly 0 in float32
    once the margin passes ~16.6 (FGSM then left confident examples unmoved).
    """
    rivals = logits.scatter(1, goal.unsqueeze(1), -torch.inf).logsumexp(1)
    ce = F.softplus(rivals - _goal_logit(logits, goal))
    return -ce if targeted else ce


def margin(logits: torch.Tensor, goal: torch.Tensor, targeted: bool) -> torch.Tensor:
    """max_{k != y} z_k - z_y (untargeted) or z_t - max_{k != t} z_k (targeted); > 0 iff adversarial."""
    difference = _goal_logit(logits, goal) - _best_other(logits, goal)
    return difference if targeted else -difference


def dlr(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3): Croce & Hein 2020, Sec. 4.2 (needs C >= 3)."""
    top = logits.sort(dim=1, descending=True).values
    return -(_goal_logit(logits, y) - _best_other(logits, y)) / (top[:, 0] - top[:, 2] + DLR_EPS)


def targeted_dlr(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2): Croce & Hein 2020, Sec. 4.2 (needs C >= 4)."""
    top = logits.sort(dim=1, descending=True).values
    scale = top[:, 0] - (top[:, 2] + top[:, 3]) / 2 + DLR_EPS
    return -(_goal_logit(logits, y) - _goal_logit(logits, target)) / scale


def smooth_margin(logits: torch.Tensor, goal: torch.Tensor, targeted: bool, temperature: float) -> torch.Tensor:
    """u, negative when adversarial: M_{j != t} z_j - z_t (targeted), z_y - M_{j != y} z_j (not).

    M is the smooth maximum T * logsumexp(v / T) at temperature T. At T = 1, softplus(u) is
    the cross-entropy CE(z, t) (targeted) or -log(1 - p_y) (untargeted); as T -> 0 it becomes
    a function of the decision margin alone.
    """
    others = logits.scatter(1, goal.unsqueeze(1), -torch.inf)
    rest = temperature * (others / temperature).logsumexp(1)
    goal_logit = _goal_logit(logits, goal)
    return rest - goal_logit if targeted else goal_logit - rest


def top_rivals(logits: torch.Tensor, goal: torch.Tensor, k: int) -> torch.Tensor:
    """(N, min(k, C - 1)) indices of the classes other than goal with the highest logits, best first."""
    k = min(k, logits.shape[1] - 1)
    return logits.scatter(1, goal.unsqueeze(1), float("-inf")).topk(k, dim=1).indices


Objective = Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]
OBJECTIVES: dict[str, Objective] = {"ce": cross_entropy, "margin": margin}
