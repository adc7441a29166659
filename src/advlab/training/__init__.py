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

__all__ = [
    "AdversarialObjective",
    "Checkpoint",
    "EpochCheckpoint",
    "Objective",
    "TrainConfig",
    "TrainHistory",
    "cross_entropy",
    "error_rate",
    "load_checkpoint",
    "read_metadata",
    "read_state",
    "save_checkpoint",
    "train_model",
    "update_metadata",
]
