"""Fully connected networks: Flatten, then (Linear, activation) per hidden layer, then Linear.

`MLP` is an `nn.Sequential`, so tools that read a network layer by layer (the exact MILP in
`advlab.exact.milp`) see its layers in forward order. Its architecture (in_features, hidden,
num_classes, activation) is plain JSON: a checkpoint stores it and rebuilds the network with
`build_model(name, **architecture)`; `hidden` may come back from JSON as a list.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from torch import nn

from advlab.errors import InputError
from advlab.models.registry import register

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class MLP(nn.Sequential):
    """in_features -> hidden[0] -> ... -> hidden[-1] -> num_classes logits, one activation type."""

    def __init__(
        self,
        in_features: int = 784,
        hidden: Sequence[int] = (100, 100),
        num_classes: int = 10,
        activation: str = "relu",
    ) -> None:
        hidden = tuple(hidden)
        widths = (in_features, *hidden, num_classes)
        if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise InputError(
                f"MLP widths must be positive integers, got in_features={in_features}, "
                f"hidden={list(hidden)}, num_classes={num_classes}"
            )
        if activation not in ACTIVATIONS:
            raise InputError(f"MLP activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        for i, (width_in, width_out) in enumerate(zip(widths[:-2], widths[1:-1]), start=1):
            layers[f"fc{i}"] = nn.Linear(width_in, width_out)
            layers[f"act{i}"] = ACTIVATIONS[activation]()
        layers["out"] = nn.Linear(widths[-2], num_classes)
        super().__init__(layers)
        self.in_features, self.hidden, self.num_classes, self.activation = in_features, hidden, num_classes, activation

    def architecture(self) -> dict[str, Any]:
        """The keywords that rebuild this network (JSON-serialisable)."""
        return {
            "in_features": self.in_features,
            "hidden": list(self.hidden),
            "num_classes": self.num_classes,
            "activation": self.activation,
        }


MLP_TRAINING = {"epochs": 10, "lr": 0.001, "batch_size": 64, "weight_decay": 0.0}


@register(
    "mlp-50-50",
    fixed=True,
    description="ReLU network 784-50-50-10, small enough for exact MILP distances (Tjeng et al. 2019)",
    training=MLP_TRAINING,
    in_features=784,
    hidden=(50, 50),
    num_classes=10,
    activation="relu",
)
@register(
    "mlp-20-20",
    fixed=True,
    description="ReLU network 784-20-20-10, small enough for exact MILP distances (Tjeng et al. 2019)",
    training=MLP_TRAINING,
    in_features=784,
    hidden=(20, 20),
    num_classes=10,
    activation="relu",
)
@register(
    "mlp",
    description="fully connected network (hidden widths and relu/sigmoid/tanh configurable)",
    training=MLP_TRAINING,
    in_features=784,
    hidden=(100, 100),
    num_classes=10,
    activation="relu",
)
def multilayer_perceptron(in_features: int, hidden: Sequence[int], num_classes: int, activation: str) -> nn.Module:
    return MLP(in_features, hidden, num_classes, activation)
