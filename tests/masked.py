"""A model with deliberately masked gradients, shared by the attack and the evaluation-check tests."""

import torch
from torch import nn


class Rounded(nn.Module):
    """The model on round(4 x) / 4: its input gradient is zero almost everywhere."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 4) / 4)
