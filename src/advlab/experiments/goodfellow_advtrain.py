"""Goodfellow, Shlens & Szegedy 2014, Sec. 6: adversarial training of maxout networks on MNIST.

The paper trains dropout maxout networks on J~ = .5 J(x) + .5 J(x + .25 sign(grad_x J)). The
original maxout network (two layers of 240 units, 5 pieces) goes from 0.94% to 0.84% clean test
error with adversarial training. A wider one (1600 units per layer) overfits without it (1.14%)
and reaches 0.782% with it (the mean of 5 seeds) when early-stopped on the ADVERSARIAL validation
error and then retrained on all 60,000 training images for that many epochs (the original maxout
result stopped once the validation error had not fallen for 100 epochs). The final adversarially
trained model errs on 17.9% of FGSM examples at eps = .25 (mean confidence on errors 81.4%),
against 89.4% (confidence 97.6%) for a maxout network without adversarial training (Sec. 4);
FGSM examples of the original model give 19.6% error on the adversarially trained one, and the
reverse 40.9%.

Schedules: `PaperSchedule` holds out the last sixth of the training images (MNIST's last 10,000
of 60,000) as validation, trains on the rest until the validation error (clean for standard
training, FGSM at eps for adversarial training) has not improved for `patience` epochs, then
retrains on every training image for the epoch of the lowest validation error. `FixedEpochs`
trains each model a fixed number of epochs on every training image (tests and --quick).
Every training is checkpointed after each epoch (under `checkpoint_dir/seed-S/`), so re-running
with the same settings and `checkpoint_dir` resumes interrupted trainings and reuses finished ones,
to the same weights. Each pair is trained once per seed; the clean-error claim's verdict is read
from the per-seed relative changes (`advlab.experiments.verdict`, conclusive from 2 seeds).

Each trained model is measured on the test split: clean error, FGSM error, mean confidence on
the misclassified FGSM examples and transfer error on the whole split; PGD error, robustness
curves and the gradient-masking checks on its first `eval_limit` images. Nothing here prints.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from advlab.analysis import DEFAULT_EPS, RobustnessEvaluation, evaluate_robustness
from advlab.data import Dataset, Splits
from advlab.errors import InputError
from advlab.experiments.verdict import claim_verdict, setup_differences, verdict_text
from advlab.training import TrainedModel as TrainingRun
from advlab.training import (
    AdversarialObjective,
    EarlyStopping,
    TrainConfig,
    best_epoch,
    default_config,
    error_rate,
    train_registered,
)

PAPER_TRAIN_IMAGES = 60_000


@dataclass(frozen=True)
class Variant:
    """A model of the experiment: a registered model with architecture keywords on top."""

    model: str
    architecture: dict[str, Any] = field(default_factory=dict)


VARIANTS: dict[str, Variant] = {
    "maxout": Variant("maxout"),  # 784-240x5-240x5-10, the original maxout network
    "maxout-1600": Variant("maxout", {"hidden": 1600}),
    "cnn": Variant("cnn"),
}
DEFAULT_MODELS = ("maxout", "maxout-1600", "cnn")

# The paper's figures, per variant and training; only those it reports for that model.
PAPER: dict[str, dict[str, dict[str, float]]] = {
    "maxout": {
        "standard": {"clean_error": 0.0094, "fgsm_error": 0.894, "mean_confidence_on_errors": 0.976},  # Sec. 4, Sec. 6
        "adversarial": {"clean_error": 0.0084},
    },
    "maxout-1600": {
        "standard": {"clean_error": 0.0114, "transfer_error": 0.409},
        "adversarial": {"clean_error": 0.00782, "fgsm_error": 0.179, "mean_confidence_on_errors": 0.814, "transfer_error": 0.196},
    },
}
PAPER_FGSM_RATIO = 0.179 / 0.894  # the final adversarially trained model's FGSM error over the Sec. 4 maxout's
FIXED_EPOCHS = "fixed epochs"  # a schedule's name in results
PAPER_SELECTION = ("early stopping on validation error (adversarial for adversarial training), then retraining on all "
                   "training images for the chosen epochs")
PAPER_OPTIMISER = "SGD with momentum and a max-norm constraint (the maxout paper's)"
# The setup the paper states for each claim (Sec. 6, and the original maxout result it follows).
PAPER_SETUP: dict[str, dict[str, Any]] = {
    "maxout": {"training images": PAPER_TRAIN_IMAGES, "units per layer": 240, "eps": 0.25, "alpha": 0.5,
               "optimiser": PAPER_OPTIMISER, "patience (epochs)": 100},
    "maxout-1600": {
        "training images": PAPER_TRAIN_IMAGES, "units per layer": 1600, "eps": 0.25, "alpha": 0.5, "optimiser": PAPER_OPTIMISER,
        "model selection": PAPER_SELECTION,
        "validation images": 10_000, "patience (epochs)": 100, "seeds": 5,
    },
}
# (standard, adversarial) epochs of `FixedEpochs` by default: adversarial training converges more slowly.
EPOCHS = {"maxout": (12, 25), "maxout-1600": (12, 25), "cnn": (8, 20)}
TARGET_RATIO = 1 / 3  # FGSM error of the adversarially trained model over the standard one's


@dataclass(frozen=True)
class FixedEpochs:
    """Train on every training image for a fixed number of epochs: per model, (standard, adversarial)."""

    epochs: Mapping[str, tuple[int, int]] = field(default_factory=lambda: dict(EPOCHS))

    def to_dict(self) -> dict[str, Any]:
        return {"name": FIXED_EPOCHS, "epochs": {k: list(v) for k, v in self.epochs.items()}}


@dataclass(frozen=True)
class PaperSchedule:
    """Early stopping on a held-out validation set, then retraining on all the training images.

    validation_fraction: the last share of the training images held out (1/6: MNIST's last
    10,000 of 60,000). patience: epochs without a new lowest validation error before stopping.
    max_epochs: the most epochs a selection run trains.
    """

    patience: int = 10
    max_epochs: int = 200
    validation_fraction: float = 1 / 6

    def __post_init__(self) -> None:
        if not 0 < self.validation_fraction < 1:
            raise InputError(f"validation_fraction must lie in (0, 1), got {self.validation_fraction}")
        if self.max_epochs < 1 or self.patience < 1:
            raise InputError(f"patience and max_epochs must be >= 1, got {self.patience}, {self.max_epochs}")

    def split(self, train: Dataset) -> tuple[Dataset, Dataset]:
        """(the first images, trained on; the last round(n * validation_fraction), validated on)."""
        n_validation = round(len(train) * self.validation_fraction)
        if not 0 < n_validation < len(train):
            raise InputError(f"{train.name}: {len(train)} training images leave none to hold out for validation")
        cut = len(train) - n_validation
        return (Dataset(train.images[:cut], train.labels[:cut], f"{train.name}[:{cut}]", train.class_to_idx),
                Dataset(train.images[cut:], train.labels[cut:], f"{train.name}[{cut}:]", train.class_to_idx))

    def to_dict(self) -> dict[str, Any]:
        return {"name": "early stopping, then retraining on all training images", **asdict(self)}


Schedule = FixedEpochs | PaperSchedule


@dataclass
class Selection:
    """The early-stopping run that chose the number of epochs."""

    n_fit: int  # images trained on
    n_validation: int  # images validated on (the last of the training set)
    measure: str  # "clean error" or "FGSM error at eps ..."
    validation: list[float]  # after each epoch
    best_epoch: int
    stopped_early: bool  # the patience ran out (else max_epochs was reached)
    checkpoint: str
    seconds: float  # spent in this run
    total_seconds: float | None  # its epochs' wall time over every run that resumed it (None: not recorded)


@dataclass
class TrainedModel:
    """One trained model and its measurements on the test split."""

    model: str  # the variant's name
    training: str  # "standard" or "adversarial"
    checkpoint: str
    architecture: dict[str, Any]
    objective: dict[str, Any]
    train_config: dict[str, Any]
    selection: Selection | None  # None under FixedEpochs
    resumed_from: int  # epochs found in the checkpoint when this run started
    train_seconds: float  # spent in this run
    total_train_seconds: float | None  # its epochs' wall time over every run that resumed it (None: not recorded)
    train_error: float
    clean_error: float
    fgsm_error: float
    fgsm_confidence_on_errors: float
    transfer_error: float  # FGSM examples crafted on the other model of the pair
    pgd_error: float | None  # on the first eval_limit test images; None when PGD is not registered
    evaluation: RobustnessEvaluation
    trained: nn.Module = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        skip = {"evaluation", "trained", "selection"}
        out = {name: getattr(self, name) for name in self.__dataclass_fields__ if name not in skip}
        return {**out, "selection": asdict(self.selection) if self.selection else None, "evaluation": self.evaluation.to_dict()}


Pair = tuple[TrainedModel, TrainedModel]  # (standard, adversarial), one seed


@dataclass
class AdvTrainExperiment:
    data_source: str
    n_train: int
    n_test: int
    eval_limit: int
    eps: float
    alpha: float
    seeds: list[int]
    schedule: dict[str, Any]
    runs: dict[str, list[Pair]]  # variant -> its pair for each seed, in the order of `seeds`
    paper: dict[str, dict[str, dict[str, float]]]

    @property
    def pairs(self) -> dict[str, Pair]:
        """Each variant's pair of the first seed (the one the figures and the robustness tables show)."""
        return {name: runs[0] for name, runs in self.runs.items()}

    def copies(self, model: str, training: str) -> list[TrainedModel]:
        """`model`'s `training` ("standard" or "adversarial") copy of each seed, in the order of `seeds`."""
        index = ("standard", "adversarial").index(training)
        return [pair[index] for pair in self.runs[model]]

    def mean(self, model: str, training: str, metric: str) -> float:
        """`metric` (a TrainedModel field) of `model`'s `training` copies, averaged over seeds."""
        return statistics.fmean(getattr(t, metric) for t in self.copies(model, training))

    def fgsm_ratio(self, model: str) -> float:
        """Mean FGSM error of the adversarially trained copies over the standard ones' (over seeds)."""
        standard = self.mean(model, "standard", "fgsm_error")
        return self.mean(model, "adversarial", "fgsm_error") / standard if standard else float("nan")

    def clean_error_changes(self, model: str) -> list[float]:
        """adversarial / standard - 1 of the clean test error, one per seed (paired by seed)."""
        return [a.clean_error / s.clean_error - 1 for s, a in self.runs[model] if s.clean_error]

    def setup(self, model: str) -> dict[str, Any]:
        """This run's setup for `model`, under the keys of PAPER_SETUP."""
        standard, _ = self.pairs[model]
        ours: dict[str, Any] = {"training images": self.n_train, "eps": self.eps, "alpha": self.alpha, "seeds": len(self.seeds),
                                "units per layer": standard.architecture.get("hidden"),
                                "optimiser": f"{standard.train_config['optimizer']}, no max-norm constraint"}
        if self.schedule["name"] == FIXED_EPOCHS:
            ours["model selection"] = "fixed epochs, last-epoch weights"
        else:
            ours.update({"model selection": PAPER_SELECTION,
                         "validation images": standard.selection.n_validation if standard.selection else None,
                         "patience (epochs)": self.schedule["patience"]})
        return ours

    def setup_differences(self, model: str) -> list[str]:
        """'what: ours (paper: theirs)' for each setting the paper states for `model` that this run does otherwise."""
        return setup_differences(self.setup(model), PAPER_SETUP[model]) if model in PAPER_SETUP else []

    def clean_error_verdict(self, model: str) -> str | None:
        """The verdict (`advlab.experiments.verdict`) on the paper's relative change of clean test error for
        `model`, from the per-seed changes (inconclusive with one seed); None where the paper states no such claim."""
        relative = self.paper_clean_error_change(model)
        if relative is None:
            return None
        return verdict_text(claim_verdict(self.clean_error_changes(model), relative), self.setup_differences(model))

    def paper_clean_error_change(self, model: str) -> float | None:
        """The paper's relative change of clean test error with adversarial training; None where it states none."""
        paper = self.paper.get(model, {})
        if "clean_error" not in paper.get("standard", {}) or "clean_error" not in paper.get("adversarial", {}):
            return None
        return paper["adversarial"]["clean_error"] / paper["standard"]["clean_error"] - 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "data_source": self.data_source, "n_train": self.n_train, "n_test": self.n_test, "eval_limit": self.eval_limit,
            "eps": self.eps, "alpha": self.alpha, "seeds": self.seeds, "schedule": self.schedule, "paper": self.paper,
            "paper_setup": PAPER_SETUP, "target_ratio": TARGET_RATIO, "paper_fgsm_ratio": PAPER_FGSM_RATIO,
            "models": {name: {"fgsm_ratio": self.fgsm_ratio(name), "setup_differences": self.setup_differences(name),
                              "clean_error_changes": self.clean_error_changes(name),
                              "clean_error_verdict": self.clean_error_verdict(name),
                              "runs": [{"seed": seed, "standard": s.to_dict(), "adversarial": a.to_dict()}
                                       for seed, (s, a) in zip(self.seeds, runs)]}
                       for name, runs in self.runs.items()},
        }


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """At least one seed, none twice, each an integer in 0..2**63-1."""
    listed = list(seeds)
    valid = all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63 for s in listed)
    if not listed or not valid or len(set(listed)) != len(listed):
        raise InputError(f"seeds must be one or more distinct integers in 0..2**63-1, got {listed}")
    return listed


def check_models(models: Sequence[str]) -> list[str]:
    """The variants asked for, each known, none twice."""
    unknown = [m for m in models if m not in VARIANTS]
    if unknown or not models or len(set(models)) != len(models):
        raise InputError(f"models must be distinct names among {', '.join(VARIANTS)}, got {', '.join(models) or 'none'}")
    return list(models)


def _fgsm(model: nn.Module, data: Dataset, eps: float, source: nn.Module | None = None) -> tuple[float, float]:
    """(error, mean confidence on the misclassified adversarial examples) under FGSM on the whole split."""
    evaluation = evaluate_robustness(model, data.images, data.labels, attacks=["fgsm"], eps=[eps], source_model=source, batch_size=1000)
    point = evaluation.transfer[0] if source is not None else evaluation.points[0]
    return point.error, point.mean_confidence_on_errors


def _early_stopping(objective: AdversarialObjective | None, validation: Dataset, eps: float, patience: int) -> tuple[EarlyStopping, str]:
    """Validation error, clean for standard training and FGSM at eps for adversarial training (the paper's rule)."""
    measure = "clean error" if objective is None else f"FGSM error at eps {eps:g}"

    def validate(model: nn.Module) -> float:
        return error_rate(model, validation) if objective is None else _fgsm(model, validation, eps)[0]

    return EarlyStopping(validate, patience, {"measure": measure, "data": validation.fingerprint()}), measure


def _train(
    variant: Variant, data: Dataset, source: str, config: TrainConfig, objective: AdversarialObjective | None, path: Path,
    progress: bool, early_stopping: EarlyStopping | None = None,
) -> TrainingRun:
    return train_registered(variant.model, data, config, architecture=variant.architecture, objective=objective, checkpoint=path,
                            resume=True, progress=progress, early_stopping=early_stopping,
                            run={"data": {"train": data.fingerprint()}}, extra={"data_source": {"source": source}})


def train_pair_member(
    name: str, splits: Splits, objective: AdversarialObjective | None, schedule: Schedule, eps: float, seed: int,
    checkpoint_dir: Path, progress: bool,
) -> tuple[TrainingRun, Selection | None]:
    """Train variant `name` by `schedule` (objective None: standard training); (trained, the selection run or None)."""
    variant, training = VARIANTS[name], "standard" if objective is None else "adversarial"
    final = checkpoint_dir / f"{name}-{training}.safetensors"
    if isinstance(schedule, FixedEpochs):
        epochs = schedule.epochs[name][0 if objective is None else 1]
        return _train(variant, splits.train, splits.source, default_config(variant.model, epochs=epochs, seed=seed), objective,
                      final, progress), None
    fit, validation = schedule.split(splits.train)
    stopping, measure = _early_stopping(objective, validation, eps, schedule.patience)
    path = checkpoint_dir / f"{name}-{training}-selection.safetensors"
    selected = _train(variant, fit, splits.source, default_config(variant.model, epochs=schedule.max_epochs, seed=seed), objective,
                      path, progress, stopping)
    curve = selected.history.validation
    selection = Selection(len(fit), len(validation), measure, curve, best_epoch(curve),
                          len(curve) < schedule.max_epochs, str(path), selected.seconds, selected.history.seconds)
    config = default_config(variant.model, epochs=selection.best_epoch, seed=seed)
    return _train(variant, splits.train, splits.source, config, objective, final, progress), selection


def goodfellow_advtrain(
    splits: Splits,
    checkpoint_dir: str | Path,
    *,
    models: Sequence[str] = DEFAULT_MODELS,
    eps: float = 0.25,
    alpha: float = 0.5,
    schedule: Schedule | None = None,
    seeds: Sequence[int] = (0,),
    eval_limit: int = 1000,
    curve_eps: Sequence[float] = DEFAULT_EPS,
    progress: bool = False,
) -> AdvTrainExperiment:
    """Standard vs FGSM-adversarially trained copies of each model in `models` (in that order), once per
    seed in `seeds`, trained by `schedule` (default `PaperSchedule()`) and measured as in the paper."""
    models, seeds = check_models(models), check_seeds(seeds)
    schedule = schedule or PaperSchedule()
    if isinstance(schedule, FixedEpochs):
        missing = [m for m in models if m not in schedule.epochs]
        if missing:
            raise InputError(f"FixedEpochs gives no epochs for {', '.join(missing)}")
    else:
        schedule.split(splits.train)  # refuses, before any work, a training set too small to split
    objective = AdversarialObjective("fgsm", eps=eps, alpha=alpha)
    subset = splits.test.take(eval_limit)
    curve = sorted({*curve_eps, eps})
    runs: dict[str, list[Pair]] = {}
    for name in models:
        runs[name] = []
        for seed in seeds:
            directory = Path(checkpoint_dir) / f"seed-{seed}"
            trained = [train_pair_member(name, splits, obj, schedule, eps, seed, directory, progress) for obj in (None, objective)]
            runs[name].append(_measure_pair(name, trained, splits, subset, objective, eps, curve, seed, directory, progress))
    return AdvTrainExperiment(
        data_source=splits.source, n_train=len(splits.train), n_test=len(splits.test), eval_limit=len(subset),
        eps=eps, alpha=alpha, seeds=seeds, schedule=schedule.to_dict(), runs=runs, paper=PAPER,
    )


def _measure_pair(
    name: str, trained: list[tuple[TrainingRun, Selection | None]], splits: Splits, subset: Dataset,
    objective: AdversarialObjective, eps: float, curve: list[float], seed: int, directory: Path, progress: bool,
) -> Pair:
    """The (standard, adversarial) pair `trained` measured on the test split (robustness curves on `subset`)."""
    (standard, _), (adversarial, _) = trained
    results = []
    for training, (run, selection), other in (("standard", trained[0], adversarial), ("adversarial", trained[1], standard)):
        model = run.model
        fgsm_error, confidence = _fgsm(model, splits.test, eps)
        transfer_error, _ = _fgsm(model, splits.test, eps, source=other.model)
        evaluation = evaluate_robustness(
            model, subset.images, subset.labels, eps=curve, seed=seed, progress=progress,
            source_model=standard.model if training == "adversarial" else None, source_name=f"standard {name}",
        )
        results.append(TrainedModel(
            model=name, training=training, checkpoint=str(directory / f"{name}-{training}.safetensors"),
            architecture=run.architecture, objective=objective.to_dict() if training == "adversarial" else {"name": "cross_entropy"},
            train_config=run.config.to_dict(), selection=selection, resumed_from=run.history.resumed_from,
            train_seconds=run.seconds, total_train_seconds=run.history.seconds,
            train_error=error_rate(model, splits.train), clean_error=error_rate(model, splits.test),
            fgsm_error=fgsm_error, fgsm_confidence_on_errors=confidence, transfer_error=transfer_error,
            pgd_error=evaluation.point("pgd", eps).error if "pgd" in evaluation.attacks else None,
            evaluation=evaluation, trained=model,
        ))
    return results[0], results[1]
