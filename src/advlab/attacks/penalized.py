"""The penalty formulation shared by L-BFGS and the penalty attack (Szegedy et al. 2013, Sec. 4.1):

    minimise  w * ||x' - x||_2^2 + softplus(u(x'))  over x' in the box,

where u < 0 when x' is adversarial (`goal_margin`), and w is searched per example.
Small w gives adversarial minimisers, large w near-clean ones; the smallest perturbation is
found near the largest w that still succeeds. Each example keeps its own w (`WeightSearch`):
multiply (success) or divide (failure) by `factor` until both a success and a failure are
seen, then bisect geometrically between the largest success and the smallest failure.
"""

from __future__ import annotations

import torch

RTOL = 1e-4  # an example is settled once its bracket is this tight: fail / success <= 1 + RTOL


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


def goal_margin(logits: torch.Tensor, goal: torch.Tensor, targeted: bool, temperature: float) -> torch.Tensor:
    """u, negative when adversarial: M_{j != t} z_j - z_t (targeted), z_y - M_{j != y} z_j (not).

    M is the smooth maximum T * logsumexp(v / T) at temperature T. At T = 1, softplus(u) is
    the cross-entropy CE(z, t) (targeted) or -log(1 - p_y) (untargeted); as T -> 0 it becomes
    a function of the decision margin alone.
    """
    goal_logit = logits.gather(1, goal.unsqueeze(1)).squeeze(1)
    others = logits.scatter(1, goal.unsqueeze(1), -torch.inf)
    rest = temperature * (others / temperature).logsumexp(1)
    return rest - goal_logit if targeted else goal_logit - rest
