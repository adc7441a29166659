"""Ground truth: exact optima and proven bounds for the questions attacks answer approximately.

- `minimal_distances(model, x, y, norm=..., time_limit=...)`: the exact minimal adversarial
  distance (closed form for affine models, MILP for ReLU / max-pool networks), one result type.
- `certify(model, x, y, eps=..., time_limit=..., milp=True)`: a proven bracket on robust
  accuracy at eps (interval/CROWN/alpha-CROWN bounds, attack, branch and bound or the decision
  MILP); see `advlab.exact.certify`, `advlab.exact.optimized`, `advlab.exact.bab`.
- `verify_property(model, prop, timeout=...)`: sat / unsat / unknown / timeout for a Property
  (input box + linear counterexample region, e.g. read from VNN-LIB); robustness is one case
  (`robustness_property`); see `advlab.exact.properties`.
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
from advlab.exact.properties import Verdict, verify_property
from advlab.exact.relu_network import ReluNetwork, UnsupportedModelError, relu_network
from advlab.exact.specs import robustness_property

__all__ = [
    "Certification",
    "MinimalDistances",
    "MinimalPerturbation",
    "ReluNetwork",
    "UnsupportedModelError",
    "Verdict",
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
    "robustness_property",
    "spec_bounds",
    "verify_property",
]
