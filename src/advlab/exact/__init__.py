"""Ground truth: exact optima for the questions attacks answer approximately."""

from advlab.exact.linear import linear_weights, logistic_loss_direction, max_linear_l2, max_linear_linf

__all__ = ["linear_weights", "logistic_loss_direction", "max_linear_l2", "max_linear_linf"]
