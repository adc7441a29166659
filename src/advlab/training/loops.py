"""Deterministic training and evaluation.

The loss is cross-entropy on the model's logits (a single logit z is read as [0, z], which is
logistic loss) plus 0.5 * weight_decay * ||W||^2 over the weight matrices (not the biases);
weight_decay may also give one coefficient per weight matrix, in the order of
`model.parameters()` (Szegedy et al. 2013 decay each layer of their networks differently).
A model with a `pretrain(data, config, progress=...)` method (an autoencoder below a
classifier) is pretrained by it first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from advlab.data.dataset import Dataset
from advlab.errors import InputError
from advlab.models.layers import as_multiclass_logits


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 64
    weight_decay: float | tuple[float, ...] = 0.0  # one for all weight matrices, or one per matrix
    optimizer: str = "adam"  # "adam" or "sgd"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise InputError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if isinstance(self.weight_decay, (list, tuple)):
            object.__setattr__(self, "weight_decay", tuple(float(d) for d in self.weight_decay))
        decays = self.weight_decay if isinstance(self.weight_decay, tuple) else (self.weight_decay,)
        if not self.lr > 0 or not decays or min(decays) < 0:
            raise InputError(f"need lr > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")
        if self.optimizer not in ("adam", "sgd"):
            raise InputError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainHistory:
    loss: list[float] = field(default_factory=list)  # mean training loss per epoch


def weight_penalty(model: nn.Module, weight_decay: float | tuple[float, ...] = 1.0) -> torch.Tensor:
    """0.5 * sum_i decay_i * ||W_i||^2 over the weight matrices W_i (parameters with ndim > 1).

    weight_decay: one coefficient for every matrix, or one per matrix in `model.parameters()` order.
    """
    weights = [p for p in model.parameters() if p.ndim > 1]
    decays = weight_decay if isinstance(weight_decay, tuple) else (weight_decay,) * len(weights)
    if len(decays) != len(weights):
        raise InputError(f"weight_decay gives {len(decays)} coefficients but the model has {len(weights)} weight matrices")
    terms = [d * p.pow(2).sum() for d, p in zip(decays, weights) if d]
    return 0.5 * torch.stack(terms).sum() if terms else torch.zeros(())


def train_model(
    model: nn.Module, data: Dataset, config: TrainConfig, *, progress: bool = True
) -> TrainHistory:
    """Minimise mean CE + weight decay with minibatches shuffled by a seeded generator."""
    pretrain = getattr(model, "pretrain", None)
    if callable(pretrain):
        pretrain(data, config, progress=progress)
    generator = torch.Generator().manual_seed(config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(params, lr=config.lr)
    else:
        optimizer = torch.optim.SGD(params, lr=config.lr, momentum=0.9)
    device = next(model.parameters()).device
    history = TrainHistory()
    model.train()
    bar = tqdm(range(config.epochs), desc="train", unit="epoch", disable=None if progress else True, leave=False)
    for _ in bar:
        order = torch.randperm(len(data), generator=generator)
        total = torch.zeros((), device=device)
        for start in range(0, len(data), config.batch_size):
            index = order[start : start + config.batch_size]
            x, y = data.images[index].to(device), data.labels[index].to(device)
            loss = F.cross_entropy(as_multiclass_logits(model(x)), y)
            if config.weight_decay:
                loss = loss + weight_penalty(model, config.weight_decay)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(index)
        history.loss.append(float(total) / len(data))
        bar.set_postfix(loss=f"{history.loss[-1]:.4f}")
    model.eval()
    return history


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels, in eval mode, batch by batch (the model's mode is restored)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        preds = [
            as_multiclass_logits(model(images[i : i + batch_size].to(device))).argmax(1).cpu()
            for i in range(0, len(images), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(preds)


def error_rate(model: nn.Module, data: Dataset) -> float:
    """Fraction of `data` the model misclassifies."""
    return float((predict(model, data.images) != data.labels).double().mean())
