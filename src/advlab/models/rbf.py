"""A shallow RBF network: one Gaussian unit per class (Goodfellow, Shlens & Szegedy 2014, Sec. 7).

The paper's unit is p(y=1 | x) = exp((x - mu)^T beta (x - mu)). Here beta is diagonal and
negative definite, beta_k = -diag(exp(s_k)), so that

    q_k(x) = -sum_i exp(s_ki) (x_i - mu_ki)^2 <= 0,   p_k(x) = exp(q_k(x)) in (0, 1],

and the units are independent (one-vs-all: the p_k need not sum to 1). The network outputs the
log-odds of each unit, log(p_k / (1 - p_k)) = q_k - log(1 - exp(q_k)), so that sigmoid(output_k)
= p_k and the arg-max output is the arg-max unit. Train it one-vs-all (binary cross-entropy of
each unit against "the label is k"); a softmax over the outputs is another model.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from advlab.errors import InputError
from advlab.models.registry import register

LOG_HALF = math.log(0.5)
MAX_Q = -1e-6  # q_k is clamped below 0 so that the log-odds stay finite at x = mu_k


def log1mexp(q: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(q)) for q < 0, accurate at both ends (Maechler 2012)."""
    return torch.where(q > LOG_HALF, torch.log(-torch.expm1(q)), torch.log1p(-torch.exp(q)))


class RBFNetwork(nn.Module):
    """One RBF unit per class; outputs the units' log-odds (see the module docstring)."""

    def __init__(self, in_features: int = 784, num_classes: int = 10) -> None:
        super().__init__()
        if in_features < 1 or num_classes < 2:
            raise InputError(f"an RBF network needs >= 1 input and >= 2 classes, got {in_features}, {num_classes}")
        self.centers = nn.Parameter(0.5 + 0.1 * torch.rand(num_classes, in_features))  # mu_k, inside the pixel box
        self.log_precision = nn.Parameter(torch.full((num_classes, in_features), -math.log(in_features)))  # s_k

    def log_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """q_k(x) = log p_k(x), shape (N, classes), computed as three matrix products."""
        x = x.flatten(1)
        precision = self.log_precision.exp()
        q = -(x.pow(2) @ precision.T - 2 * x @ (precision * self.centers).T + (precision * self.centers.pow(2)).sum(1))
        return q.clamp(max=MAX_Q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.log_probabilities(x)
        return q - log1mexp(q)


@register(
    "rbf",
    description="shallow RBF network, one Gaussian unit per class, outputs log-odds (Goodfellow et al. 2014, Sec. 7)",
    training={"epochs": 10, "lr": 0.05, "batch_size": 64},
    in_features=784,
    num_classes=10,
)
def rbf_network(in_features: int, num_classes: int) -> nn.Module:
    return RBFNetwork(in_features, num_classes)
