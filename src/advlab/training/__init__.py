"""Training loops (standard and adversarial) and checkpoints."""

from advlab.training.adversarial import AdversarialObjective
from advlab.training.checkpoints import (
    Checkpoint,
    load_checkpoint,
    read_metadata,
    read_state,
    save_checkpoint,
    update_metadata,
)
from advlab.training.loops import (
    EarlyStopping,
    EpochCheckpoint,
    Objective,
    TrainConfig,
    TrainHistory,
    best_epoch,
    cross_entropy,
    error_rate,
    patience_exhausted,
    scheduled_lr,
    stopping_epoch,
    train_model,
)
from advlab.training.registered import TrainedModel, default_config, record_errors, train_registered

__all__ = [
    "AdversarialObjective",
    "Checkpoint",
    "EarlyStopping",
    "EpochCheckpoint",
    "Objective",
    "TrainConfig",
    "TrainHistory",
    "TrainedModel",
    "best_epoch",
    "cross_entropy",
    "default_config",
    "error_rate",
    "load_checkpoint",
    "patience_exhausted",
    "stopping_epoch",
    "read_metadata",
    "read_state",
    "record_errors",
    "save_checkpoint",
    "scheduled_lr",
    "train_model",
    "train_registered",
    "update_metadata",
]
