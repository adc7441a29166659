"""Ground truth: exact optima and proven bounds for the questions attacks answer approximately.

- `minimal_distances(model, x, y, norm=..., time_limit=...)`: the exact minimal adversarial
  distance (closed form for affine models, MILP for ReLU / max-pool networks), one result type.
- `certify(model, x, y, eps=..., time_limit=..., milp=True)`: a proven bracket on robust
  accuracy at eps (interval/CROWN/alpha-CROWN bounds, attack, branch and bound or the decision
  MILP); see `advlab.exact.certify`, `advlab.exact.optimized`, `advlab.exact.bab`.
- `relu_network`, `hidden_bounds` / `margin_bounds` (interval and CROWN), and the closed forms
  for linear models (`minimal_perturbation`, `max_linear_linf`, `max_linear_l2`).
"""

from advlab.exact.bounds import hidden_bounds, interval_bounds, margin_bounds, spec_bounds
from advlab.exact.certify import Certification, certify
from advlab.exact.distances import MinimalDistances, minimal_distances, minimal_linf
from advlab.exact.linear import (
    MinimalPerturbation,
    affine_minimal_perturbation,
    logistic_loss_direction,
    max_linear_l2,
    max_linear_linf,
    min_norm_halfspace,
    minimal_perturbation,
    multiclass_weights,
)
from advlab.exact.relu_network import ReluNetwork, UnsupportedModelError, relu_network

__all__ = [
    "Certification",
    "MinimalDistances",
    "MinimalPerturbation",
    "ReluNetwork",
    "UnsupportedModelError",
    "affine_minimal_perturbation",
    "certify",
    "hidden_bounds",
    "interval_bounds",
    "logistic_loss_direction",
    "margin_bounds",
    "max_linear_l2",
    "max_linear_linf",
    "min_norm_halfspace",
    "minimal_distances",
    "minimal_linf",
    "minimal_perturbation",
    "multiclass_weights",
    "relu_network",
    "spec_bounds",
]
