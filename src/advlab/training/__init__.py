"""Training loops and checkpoints."""

from advlab.training.checkpoints import Checkpoint, load_checkpoint, read_metadata, save_checkpoint
from advlab.training.loops import TrainConfig, TrainHistory, error_rate, predict, train_model

__all__ = [
    "Checkpoint",
    "TrainConfig",
    "TrainHistory",
    "error_rate",
    "load_checkpoint",
    "predict",
    "read_metadata",
    "save_checkpoint",
    "train_model",
]
