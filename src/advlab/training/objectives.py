"""Szegedy et al. 2013, Sec. 4.2: training on a pool of adversarial examples.

"We have successfully trained a two layer 100-100-10 non-convolutional neural network with a
test error below 1.2% by keeping a pool of adversarial examples a random subset of which is
continuously replaced by newly generated adversarial examples and which is mixed into the
original training set all the time." (The paper also made examples for the hidden layers; here
they are made for the input only.)

`AdversarialPool` is that objective for `train_model`: every `every` updates (counted from the
start of each epoch) it draws `pool_size` training images and a random wrong target for each,
runs the targeted box-constrained L-BFGS attack of Sec. 4.1 (cross-entropy loss, T = 1) on the
current model, and keeps the examples that reached their target, with their true labels. Each
minibatch of n clean examples is trained together with round(fraction * n) examples drawn from
the pool: the loss is the mean cross-entropy over both.

Randomness (which images, which targets, which pool examples) is drawn from torch's global RNG,
which `train_model` forks from the seed and checkpoints every epoch; the pool is regenerated at
the start of every epoch, so a resumed run (which starts at an epoch boundary) continues exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks import LBFGS
from advlab.data.dataset import Dataset
from advlab.errors import InputError
from advlab.models.layers import as_multiclass_logits


@dataclass
class AdversarialPool:
    """An `Objective`: cross-entropy on each minibatch mixed with a regenerated pool of targeted
    L-BFGS adversarial examples (see the module docstring).

    data: the training set (the pool's images come from it); batch_size: the training batch size
    (with len(data), it fixes where epochs start); attack: keyword arguments of `LBFGS`.
    """

    data: Dataset = field(repr=False)
    batch_size: int
    pool_size: int = 100
    every: int = 100
    fraction: float = 0.5
    attack: dict[str, Any] = field(default_factory=lambda: {"temperature": 1.0, "search_steps": 10, "max_iter": 50})
    seed: int = 0
    regenerations: int = field(default=0, init=False)  # how many pools this objective has made
    kept: list[int] = field(default_factory=list, init=False)  # examples kept in each pool (targets reached)
    _calls: int = field(default=0, init=False, repr=False)
    _pool: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.pool_size < 1 or self.every < 1:
            raise InputError(f"batch_size, pool_size and every must be >= 1, got {self.batch_size}, {self.pool_size}, {self.every}")
        if not 0 < self.fraction <= 10 or not math.isfinite(self.fraction):
            raise InputError(f"fraction must be in (0, 10], got {self.fraction}")
        if len(self.data) < 1:
            raise InputError("the pool needs a non-empty training set")

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        return {"name": "szegedy_pool", "pool_size": self.pool_size, "every": self.every, "fraction": self.fraction,
                "attack": dict(self.attack), "seed": self.seed}

    def regenerate(self, model: nn.Module) -> None:
        """A new pool: targeted L-BFGS on pool_size random training images of the current model."""
        index = torch.randperm(len(self.data))[: self.pool_size]
        x, y = self.data.images[index], self.data.labels[index]
        classes = int(self.data.labels.max()) + 1
        targets = (y + torch.randint(1, classes, y.shape)) % classes
        device = next(model.parameters()).device
        result = LBFGS(model, seed=self.seed + self.regenerations, **self.attack)(x.to(device), y.to(device), targets=targets.to(device))
        reached = result.success.cpu() & result.clean_correct.cpu()
        self._pool = (result.x_adv.detach().cpu()[reached], y[reached])
        self.regenerations += 1
        self.kept.append(int(reached.sum()))

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if (self._calls % self.steps_per_epoch) % self.every == 0:
            self.regenerate(model)
        self._calls += 1
        assert self._pool is not None  # made above on the first call
        pool_x, pool_y = self._pool
        m = round(self.fraction * len(x))
        if len(pool_y) and m:
            pick = torch.randint(len(pool_y), (m,))
            x = torch.cat([x, pool_x[pick].to(x.device, x.dtype)])
            y = torch.cat([y, pool_y[pick].to(y.device)])
        return F.cross_entropy(as_multiclass_logits(model(x)), y)
