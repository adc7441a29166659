"""The learning rate of each update of a training (`advlab.training.TrainConfig.lr_schedule`).

constant: lr throughout; cosine: lr * (1 + cos(pi * t / T)) / 2 for update t of T = epochs x
updates per epoch, from lr towards 0 (Loshchilov & Hutter 2017, "SGDR", without restarts). A pure
function of the update count, so a resumed run takes the same steps as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch

LR_SCHEDULES = ("constant", "cosine")


class Scheduled(Protocol):
    """What a schedule reads of a training's settings (`TrainConfig` has it)."""

    lr: float
    epochs: int
    lr_schedule: str


def scheduled_lr(config: Scheduled, update: int, updates_per_epoch: int) -> float:
    """The learning rate of update `update` (0-based) of a run of config.epochs x updates_per_epoch = T updates:
    constant: lr; cosine: lr * (1 + cos(pi * update / T)) / 2, from lr at the first update towards 0 after the last.
    A pure function of the update count, so a resumed run takes the same steps as an uninterrupted one."""
    if config.lr_schedule == "constant":
        return config.lr
    total = config.epochs * updates_per_epoch
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(update, total) / total))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class Optimized(Scheduled, Protocol):
    """What building a training's optimizer reads of its settings (`TrainConfig` has it)."""

    optimizer: str  # "adam" or "sgd"


def make_optimizer(config: Optimized, params: Sequence[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Adam, or SGD with momentum 0.9 (`config.optimizer` "adam" / "sgd"), at config.lr, over `params`."""
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr)
    return torch.optim.SGD(params, lr=config.lr, momentum=0.9)
