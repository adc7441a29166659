"""Ground truth: exact optima for the questions attacks answer approximately."""

from advlab.exact.linear import (
    MinimalPerturbation,
    logistic_loss_direction,
    max_linear_l2,
    max_linear_linf,
    min_norm_halfspace,
    minimal_perturbation,
    multiclass_weights,
)
from advlab.exact.milp import MILPResult, minimal_linf, relu_network

__all__ = [
    "MILPResult",
    "MinimalPerturbation",
    "logistic_loss_direction",
    "max_linear_l2",
    "max_linear_linf",
    "min_norm_halfspace",
    "minimal_linf",
    "minimal_perturbation",
    "multiclass_weights",
    "relu_network",
]
