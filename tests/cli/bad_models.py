"""Models that misbehave, for the CLI table's --model rows (`tests.cli.bad_models:NAME`). Each
declares its weights its own (`advlab_pretrained = True`), so the rows reach the misbehaviour;
`untrained` does not."""

import torch
from torch import nn


class _Tuple(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(784, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.linear(x.flatten(1))
        return z, z.softmax(1)


def tuple_output() -> nn.Module:
    """Returns (logits, probabilities), as some model zoos do."""
    model = _Tuple()
    model.advlab_pretrained = True
    return model


def nan_output() -> nn.Module:
    """A softmax regression whose weights are NaN: every logit is NaN."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with torch.no_grad():
        model[1].weight.fill_(float("nan"))
    model.advlab_pretrained = True
    return model


def untrained() -> nn.Module:
    """A fresh softmax regression with no weights of its own."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def pretrained() -> nn.Module:
    """A softmax regression that declares its weights its own (zeros here)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    nn.init.zeros_(model[1].weight)
    model.advlab_pretrained = True
    return model
