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
    EpochCheckpoint,
    Objective,
    TrainConfig,
    TrainHistory,
    cross_entropy,
    error_rate,
    train_model,
)
from advlab.training.registered import TrainedModel, default_config, record_errors, train_registered

__all__ = [
    "AdversarialObjective",
    "Checkpoint",
    "EpochCheckpoint",
    "Objective",
    "TrainConfig",
    "TrainHistory",
    "TrainedModel",
    "cross_entropy",
    "default_config",
    "error_rate",
    "load_checkpoint",
    "read_metadata",
    "read_state",
    "record_errors",
    "save_checkpoint",
    "train_model",
    "train_registered",
    "update_metadata",
]
