"""Deterministic training and evaluation.

The loss is an objective (by default cross-entropy on the model's logits; a single logit z is
read as [0, z], which is logistic loss) plus 0.5 * weight_decay * ||W||^2 over the weight
matrices (not the biases); weight_decay may also give one coefficient per weight matrix, in the
order of `model.parameters()` (Szegedy et al. 2013 decay each layer of their networks
differently). An `AutoencoderClassifier` (an autoencoder below a classifier) is pretrained first
(`advlab.training.pretraining`). The learning rate is constant or decays along a cosine to 0 over the
run's updates (`scheduled_lr`). Training can checkpoint every epoch and resume exactly, and stop
early when an error measured after each epoch stops improving (`EarlyStopping`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from advlab.data.dataset import Dataset
from advlab.data.shard import current_shard
from advlab.errors import CheckpointError, InputError
from advlab.progress import progress_bar
from advlab.models.autoencoder import AutoencoderClassifier
from advlab.models.inference import predict
from advlab.models.layers import as_multiclass_logits
from advlab.training.checkpoints import read_state, save_checkpoint
from advlab.training.pretraining import kept_as_pretrained, pretrain_autoencoder
from advlab.training.schedule import LR_SCHEDULES, make_optimizer, scheduled_lr, set_lr

@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 64
    weight_decay: float | tuple[float, ...] = 0.0  # one for all weight matrices, or one per matrix
    optimizer: str = "adam"  # "adam" or "sgd"
    seed: int = 0
    lr_schedule: str = "constant"  # "constant", or "cosine": lr decays to 0 over the `epochs` (see `scheduled_lr`)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"{name} must be an integer, got {value!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise InputError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if isinstance(self.weight_decay, (list, tuple)):
            object.__setattr__(self, "weight_decay", tuple(float(d) for d in self.weight_decay))
        decays = self.weight_decay if isinstance(self.weight_decay, tuple) else (self.weight_decay,)
        if not math.isfinite(self.lr) or not self.lr > 0 or not decays or not all(math.isfinite(d) and d >= 0 for d in decays):
            raise InputError(f"need a finite lr > 0 and finite weight_decay >= 0, got {self.lr}, {self.weight_decay}")
        if self.optimizer not in ("adam", "sgd"):
            raise InputError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")

    def to_dict(self) -> dict[str, Any]:
        """The settings; lr_schedule only when it is not the default constant, so that the records of constant-rate
        trainings (checkpoints, reports) read as they did before schedules existed."""
        out = asdict(self)
        if self.lr_schedule == "constant":
            del out["lr_schedule"]
        return out


@dataclass
class TrainHistory:
    loss: list[float] = field(default_factory=list)  # mean training loss per epoch
    resumed_from: int = 0  # epochs already done in the checkpoint a resumed run started from
    validation: list[float] = field(default_factory=list)  # with early stopping: the validation error after each epoch
    # wall seconds of all its epochs, over every run that resumed it; None when a checkpoint written
    # before this was recorded was resumed (the earlier runs' time is unknown)
    seconds: float | None = 0.0


Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""objective(model, x, y) -> the scalar loss of one minibatch, computed with the model in train mode.

An objective may also leave gradients in the parameters' `.grad` (the loop zeroes them before the
call and calls backward on the returned loss after it), which lets one backward pass serve both
an input gradient and a term of the loss (see `advlab.training.adversarial`)."""


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The standard objective: mean cross-entropy of the model's logits."""
    return F.cross_entropy(as_multiclass_logits(model(x)), y)


def describe_objective(objective: Objective) -> dict[str, Any]:
    """An objective's settings for checkpoints: its `to_dict()`, else its name."""
    to_dict = getattr(objective, "to_dict", None)
    return to_dict() if callable(to_dict) else {"name": getattr(objective, "__name__", type(objective).__name__)}


@dataclass(frozen=True)
class EpochCheckpoint:
    """Where `train_model` saves the model and its training state after every epoch.

    `run` describes the run beyond the model, the training settings and the objective (e.g. the
    data's fingerprint); a resume refuses a checkpoint whose model, architecture, settings,
    objective or run differ. `extra` is written along but not compared (e.g. the data's path).
    """

    path: Path
    model_name: str
    architecture: dict[str, Any]
    run: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))


def best_epoch(errors: Sequence[float]) -> int:
    """The epoch (1-based) of the lowest validation error; the earliest one on ties."""
    if not errors:
        raise InputError("no validation errors to choose an epoch from")
    return min(range(len(errors)), key=lambda i: errors[i]) + 1


def stopping_epoch(errors: Sequence[float], patience: int, most: int) -> int:
    """The epoch at which early stopping ends a run if the error never falls below today's best
    again: best_epoch + patience (patience epochs from the start before any error), at most `most`.
    The training bar counts to it, so its ETA is the time until the patience runs out."""
    return min(most, (best_epoch(errors) if errors else 0) + patience)


def patience_exhausted(errors: Sequence[float], patience: int) -> bool:
    """True when the last `patience` epochs all came after the best one: len(errors) - best_epoch >= patience."""
    return bool(errors) and len(errors) - best_epoch(errors) >= patience


@dataclass(frozen=True)
class EarlyStopping:
    """Stop training once the validation error has not fallen below its minimum for `patience` epochs.

    `validate(model)` gives the error after each epoch, with the model in eval mode; it must not
    change the model (the loop restores torch's RNG state after it, so training draws the same
    dropout masks with or without validation). `describe` says what it measures; a resumed run
    must measure the same. `config.epochs` stays the most epochs a run may train.
    """

    validate: Callable[[nn.Module], float]
    patience: int
    describe: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 1:
            raise InputError(f"patience must be an integer >= 1, got {self.patience!r}")

    def error(self, model: nn.Module) -> float:
        """The validation error of `model`, measured in eval mode; the model's mode and the RNG are left as they were."""
        was_training, state = model.training, torch.get_rng_state()
        model.eval()
        try:
            return float(self.validate(model))
        finally:
            model.train(was_training)
            torch.set_rng_state(state)


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
    model: nn.Module,
    data: Dataset,
    config: TrainConfig,
    *,
    progress: bool = True,
    objective: Objective | None = None,
    checkpoint: EpochCheckpoint | None = None,
    resume: bool = False,
    early_stopping: EarlyStopping | None = None,
) -> TrainHistory:
    """Minimise the mean objective (default cross-entropy) + weight decay over seeded minibatches.

    Randomness: the minibatch order comes from a generator seeded with `config.seed`; whatever the
    model or objective draws from torch's global RNG (dropout masks, random starts) comes from a
    fork of it seeded with `config.seed`, so the caller's RNG is left as it was. With `checkpoint`,
    the model, the optimizer and both RNG states are written atomically after every epoch; with
    `resume` and an existing checkpoint, training continues after its last epoch and ends with the
    same weights, bit for bit, as a run that was never interrupted. The learning rate of each update
    is `scheduled_lr` of its index. With the constant schedule nothing in an epoch depends on
    `config.epochs`, so resuming with more epochs extends a finished run exactly as a longer run; a
    decaying schedule spans `config.epochs`, so its resume must ask for the same epochs.

    With `early_stopping`, the validation error is measured after every epoch (kept in the history
    and the checkpoint) and training ends, at most `config.epochs` epochs in, as soon as the error
    has not improved for its patience; the weights are the last epoch's (`best_epoch` of
    `history.validation` says which epoch to retrain for).

    Under a torch.distributed process group of W processes (torchrun) the model is wrapped in
    DistributedDataParallel: every rank draws the same minibatch, takes its positions r, r + W,
    ... of it, and weights its mean loss by its share of the minibatch, so that DDP's average of
    the gradients is the gradient of the minibatch mean, as in one process (equal up to float
    rounding for objectives that draw no random numbers; dropout masks and PGD starts are drawn
    per rank). All ranks hold identical weights; rank 0 writes the checkpoints.
    """
    objective = objective or cross_entropy
    shard = current_shard()
    kept = kept_as_pretrained(model)
    optimizer = make_optimizer(config, [p for p in model.parameters() if p.requires_grad and p not in kept])
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(config.seed)
    identity = _identity(checkpoint, config, objective, early_stopping) if checkpoint else {}
    history = TrainHistory()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.default_generator.manual_seed(config.seed)
        if device.type == "cuda":
            torch.cuda.default_generators[device.index or 0].manual_seed(config.seed)
        if checkpoint and resume and checkpoint.path.is_file():
            history = _restore(checkpoint, identity, model, optimizer, generator, device, objective)
            if early_stopping is not None and len(history.validation) != history.resumed_from:
                raise CheckpointError(f"{checkpoint.path}: holds {len(history.validation)} validation errors for "
                                      f"{history.resumed_from} epochs; cannot resume it with early stopping")
            check_labels(model, data)
        else:
            check_labels(model, data)
            if isinstance(model, AutoencoderClassifier):
                pretrain_autoencoder(model, data, config, progress=progress)
        model.train()
        net = DistributedDataParallel(model) if shard.world > 1 else model
        def planned() -> int:  # epochs the bar counts to
            if early_stopping is None:
                return config.epochs
            return max(stopping_epoch(history.validation, early_stopping.patience, config.epochs), history.resumed_from)

        bar = progress_bar(planned() * len(data), "train", enabled=progress and shard.is_root)
        bar.update(history.resumed_from * len(data))
        per_epoch = math.ceil(len(data) / config.batch_size)
        for epoch in range(history.resumed_from, config.epochs):
            if early_stopping is not None and patience_exhausted(history.validation, early_stopping.patience):
                break
            started = time.perf_counter()
            order = torch.randperm(len(data), generator=generator)
            total = torch.zeros((), device=device)
            for step, start in enumerate(range(0, len(data), config.batch_size)):
                set_lr(optimizer, scheduled_lr(config, epoch * per_epoch + step, per_epoch))
                index = order[start : start + config.batch_size]
                mine = index[shard.rank :: shard.world]
                share = len(mine) * shard.world / len(index)  # 0 for a rank with no example: it still joins the all-reduce
                mine = mine if len(mine) else index[:1]
                x, y = data.images[mine].to(device), data.labels[mine].to(device)
                model.zero_grad(set_to_none=True)
                loss = objective(net, x, y) * share
                if config.weight_decay:
                    loss = loss + weight_penalty(model, config.weight_decay)
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(index) / shard.world
                bar.update(len(index))
            history.loss.append(float(shard.all_sum(total)) / len(data))
            if early_stopping is not None:
                history.validation.append(early_stopping.error(model))
                bar.total = planned() * len(data)
            if history.seconds is not None:
                history.seconds += time.perf_counter() - started
            bar.set_postfix(epoch=epoch + 1, loss=f"{history.loss[-1]:.4f}",
                            **({"val": f"{history.validation[-1]:.4f}"} if history.validation else {}))
            if checkpoint and shard.is_root:
                stopped = None if early_stopping is None else patience_exhausted(history.validation, early_stopping.patience)
                _save(checkpoint, identity, model, optimizer, generator, device, epoch + 1, config.epochs, history, objective, stopped)
    bar.close()
    model.eval()
    return history


def check_labels(model: nn.Module, data: Dataset) -> None:
    """Every label of `data` is a class of the model (one forward pass in eval mode on one example)."""
    if len(data) == 0:
        raise InputError(f"{data.name}: no examples to train on")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            classes = as_multiclass_logits(model(data.images[:1].to(next(model.parameters()).device))).shape[1]
    finally:
        model.train(was_training)
    low, high = int(data.labels.min()), int(data.labels.max())
    if low < 0 or high >= classes:
        raise InputError(f"{data.name}: labels run from {low} to {high} but the model has {classes} classes (0..{classes - 1})")


# ---- per-epoch checkpoints ----------------------------------------------------------------------
def _identity(checkpoint: EpochCheckpoint, config: TrainConfig, objective: Objective,
              early_stopping: EarlyStopping | None) -> dict[str, Any]:
    """What a resume must match, in its JSON form (tuples become lists); the patience may change."""
    run = {"training": config.to_dict(), "objective": describe_objective(objective), **checkpoint.run}
    if early_stopping is not None:
        run["validation"] = early_stopping.describe
    return json.loads(json.dumps(run))


def _rng_states(generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    states = {"rng/shuffle": generator.get_state(), "rng/torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["rng/cuda"] = torch.cuda.get_rng_state(device)
    return states


def _save(
    checkpoint: EpochCheckpoint,
    identity: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    device: torch.device,
    epoch: int,
    epochs: int,
    history: TrainHistory,
    objective: Objective,
    stopped: bool | None = None,
) -> None:
    """Write the training state after `epoch` (the objective's own state too, where it has one); `stopped`: None
    without early stopping, else whether its patience ran out."""
    state = optimizer.state_dict()
    tensors = {f"optimizer/{i}/{k}": v for i, entry in state["state"].items() for k, v in entry.items() if isinstance(v, torch.Tensor)}
    scalars = {str(i): {k: v for k, v in entry.items() if not isinstance(v, torch.Tensor)} for i, entry in state["state"].items()}
    save_checkpoint(
        checkpoint.path,
        model,
        model_name=checkpoint.model_name,
        architecture=checkpoint.architecture,
        metadata={
            **checkpoint.extra,
            **identity,
            "progress": {"epoch": epoch, "epochs": epochs, "complete": epoch == epochs or bool(stopped), "loss": history.loss,
                         "seconds": history.seconds,
                         **({} if stopped is None else {"stopped_early": stopped, "validation": history.validation})},
            "optimizer": {"param_groups": state["param_groups"], "scalars": scalars},
        },
        state={**tensors, **_rng_states(generator, device), **{f"objective/{k}": v for k, v in _objective_state(objective).items()}},
    )


def _objective_state(objective: Objective) -> dict[str, torch.Tensor]:
    """An objective's own state (e.g. Szegedy's pools) to checkpoint with the training: its `state()`, if it has one."""
    state = getattr(objective, "state", None)
    return state() if callable(state) else {}


def _differences(stored: Any, wanted: Any, prefix: str = "") -> list[str]:
    if isinstance(stored, dict) and isinstance(wanted, dict):
        return [d for k in sorted(set(stored) | set(wanted)) for d in _differences(stored.get(k), wanted.get(k), f"{prefix}{k}.")]
    return [] if stored == wanted else [f"{prefix.rstrip('.')} (checkpoint {stored!r}, now {wanted!r})"]


def _restore(
    checkpoint: EpochCheckpoint,
    identity: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    device: torch.device,
    objective: Objective,
) -> TrainHistory:
    """Load weights, optimizer and RNG states (and the objective's own state, where it has one) from a checkpoint
    of the same run."""
    weights, state, document = read_state(checkpoint.path)
    stored = {"model": document.get("model"), "architecture": document.get("architecture"), **{k: document.get(k) for k in identity}}
    wanted = json.loads(json.dumps({"model": checkpoint.model_name, "architecture": checkpoint.architecture, **identity}))
    for run in (stored, wanted):  # with a constant lr (the default, left out of the record) nothing in an epoch
        # depends on the total, so a run may be extended
        if isinstance(run.get("training"), dict) and run["training"].get("lr_schedule", "constant") == "constant":
            run["training"] = {k: v for k, v in run["training"].items() if k not in ("epochs", "lr_schedule")}
    differences = _differences(stored, wanted)
    if differences:
        raise CheckpointError(f"{checkpoint.path}: cannot resume a different run: " + "; ".join(differences))
    if "progress" not in document or "rng/shuffle" not in state:
        raise CheckpointError(f"{checkpoint.path}: holds no training state to resume from")
    try:
        done, epochs = int(document["progress"]["epoch"]), int(identity["training"]["epochs"])
        if done > epochs:
            raise CheckpointError(f"{checkpoint.path}: the checkpoint is at epoch {done}, past the {epochs} epochs asked for")
        model.load_state_dict(weights, strict=True)
        entries: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in document["optimizer"]["scalars"].items()}
        for name, value in state.items():
            if name.startswith("optimizer/"):
                _, index, key = name.split("/", 2)
                entries.setdefault(int(index), {})[key] = value  # load_state_dict moves it to the parameter's device
        optimizer.load_state_dict({"state": entries, "param_groups": document["optimizer"]["param_groups"]})
        load_state = getattr(objective, "load_state", None)
        if callable(load_state):
            load_state({k.removeprefix("objective/"): v for k, v in state.items() if k.startswith("objective/")})
        generator.set_state(state["rng/shuffle"])
        torch.set_rng_state(state["rng/torch"])
        if device.type == "cuda" and "rng/cuda" in state:
            torch.cuda.set_rng_state(state["rng/cuda"], device)
        loss = [float(v) for v in document["progress"]["loss"]]
        validation = [float(v) for v in document["progress"].get("validation", [])]
        seconds = document["progress"].get("seconds")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf):
            raise ValueError(f"progress.seconds must be a number >= 0, got {seconds!r}")
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise CheckpointError(f"{checkpoint.path}: corrupt training state, cannot resume ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:200]})") from None
    return TrainHistory(loss=loss, resumed_from=done, validation=validation, seconds=None if seconds is None else float(seconds))


def error_rate(model: nn.Module, data: Dataset) -> float:
    """Fraction of `data` the model misclassifies."""
    return float((predict(model, data.images) != data.labels).double().mean())
