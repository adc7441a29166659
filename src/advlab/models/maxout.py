"""Maxout networks (Goodfellow, Warde-Farley, Mirza, Courville & Bengio 2013).

A maxout unit takes the max over k affine pieces: h_i(x) = max_{j=1..k} (x^T W_{:,i,j} + b_{ij}).
The permutation-invariant MNIST model of the maxout paper (Sec. 5.1) has two maxout layers of
240 units with 5 pieces each and a softmax layer, trained with dropout: inputs dropped with
probability 0.2, hidden units with probability 0.5. Goodfellow et al. 2014 (Sec. 6) adversarially
train this model (and a wider 1600-unit one). The default here is the 240 x 5 model: about one
second per epoch on 6,309 images on one CPU core. The max-norm constraint of the 2013 paper is
left out (weight decay is available through `TrainConfig`).
"""

from __future__ import annotations

import torch
from torch import nn

from advlab.errors import InputError
from advlab.models.registry import register


class MaxoutLinear(nn.Module):
    """`units` maxout units, each the max over `pieces` affine functions of the input."""

    def __init__(self, in_features: int, units: int, pieces: int) -> None:
        super().__init__()
        if min(in_features, units, pieces) < 1:
            raise InputError(f"maxout sizes must be >= 1, got in={in_features}, units={units}, pieces={pieces}")
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_features, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(x.shape[0], self.units, self.pieces).amax(dim=2)


class MaxoutNet(nn.Module):
    """Dropout -> [maxout -> dropout] x layers -> linear logits."""

    def __init__(
        self,
        in_features: int = 784,
        hidden: int = 240,
        pieces: int = 5,
        layers: int = 2,
        num_classes: int = 10,
        input_dropout: float = 0.2,
        hidden_dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if layers < 1:
            raise InputError(f"maxout network needs >= 1 hidden layer, got {layers}")
        if not (0 <= input_dropout < 1 and 0 <= hidden_dropout < 1):
            raise InputError(f"dropout probabilities must lie in [0, 1), got {input_dropout}, {hidden_dropout}")
        blocks: list[nn.Module] = [nn.Flatten(), nn.Dropout(input_dropout)]
        width = in_features
        for _ in range(layers):
            blocks += [MaxoutLinear(width, hidden, pieces), nn.Dropout(hidden_dropout)]
            width = hidden
        blocks.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register(
    "maxout",
    description="maxout MLP 784-240x5-240x5-10 with dropout (Goodfellow et al. 2013; 2014 Sec. 6)",
    training={"epochs": 12, "lr": 1e-3, "batch_size": 64},
    in_features=784,
    hidden=240,
    pieces=5,
    layers=2,
    num_classes=10,
    input_dropout=0.2,
    hidden_dropout=0.5,
)
def maxout_network(
    in_features: int, hidden: int, pieces: int, layers: int, num_classes: int, input_dropout: float, hidden_dropout: float
) -> nn.Module:
    return MaxoutNet(in_features, hidden, pieces, layers, num_classes, input_dropout, hidden_dropout)
