"""Train a registered model: the one entry point that the CLI, the experiments, the benchmarks
and the tests share ("build the model from its spec with the seed, then train it").

The seed in `TrainConfig` decides everything: the initial weights (`build_model(name,
seed=config.seed)`), the minibatch order and whatever the model draws while training (dropout).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advlab.data.dataset import Dataset
from advlab.models.registry import build_model, get_spec
from advlab.training.checkpoints import update_metadata
from advlab.training.loops import EarlyStopping, EpochCheckpoint, Objective, TrainConfig, TrainHistory, error_rate, train_model


def default_config(name: str, **overrides: Any) -> TrainConfig:
    """The registered training defaults of model `name` (TrainConfig's where it sets none), with
    `overrides` (e.g. `epochs=3, seed=1`) on top."""
    return TrainConfig(**{**get_spec(name).training, **overrides})


@dataclass
class TrainedModel:
    model: nn.Module  # in eval mode, on the device it was trained on
    name: str
    architecture: dict[str, Any]  # the keywords that rebuild it: build_model(name, **architecture)
    config: TrainConfig
    history: TrainHistory
    seconds: float  # wall time of training (this call only, when resumed)


def train_registered(
    name: str,
    data: Dataset,
    config: TrainConfig | None = None,
    *,
    architecture: dict[str, Any] | None = None,
    objective: Objective | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    run: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    resume: bool = False,
    early_stopping: EarlyStopping | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> TrainedModel:
    """Build model `name` (registered architecture, `architecture` keywords on top) with initial
    weights from `config.seed` (default: `default_config(name)`), move it to `device` and train it
    on `data` with `train_model`.

    checkpoint: a path written after every epoch (weights, optimizer and RNG states, plus `run`,
    which a resume must match, and `extra`, written along); with `resume`, an existing checkpoint
    of the same run is continued to the same final weights as an uninterrupted run.
    early_stopping: stop when its validation error stops improving (`train_model`).
    """
    config = config or default_config(name)
    architecture = {**get_spec(name).architecture, **(architecture or {})}
    model = build_model(name, seed=config.seed, **architecture).to(device)
    epoch_checkpoint = (
        EpochCheckpoint(Path(checkpoint), name, architecture, run=dict(run or {}), extra=dict(extra or {}))
        if checkpoint is not None
        else None
    )
    start = time.perf_counter()
    history = train_model(model, data, config, progress=progress, objective=objective, checkpoint=epoch_checkpoint, resume=resume,
                          early_stopping=early_stopping)
    return TrainedModel(model.eval(), name, architecture, config, history, time.perf_counter() - start)


def record_errors(checkpoint: str | os.PathLike[str], trained: TrainedModel, train: Dataset, test: Dataset,
                  **extra: Any) -> dict[str, float]:
    """The trained model's error rate on `train` and `test` (fraction misclassified), written into
    its checkpoint with the final loss, the training time, the epoch a resume started after and
    `extra` entries; returns {"train_error", "test_error"}."""
    metrics = {"train_error": error_rate(trained.model, train), "test_error": error_rate(trained.model, test)}
    update_metadata(checkpoint, {"metrics": metrics, "final_loss": trained.history.loss[-1], "train_seconds": trained.seconds,
                                 "resumed_from_epoch": trained.history.resumed_from, **extra})
    return metrics
