"""Goodfellow, Shlens & Szegedy 2014, Sec. 6: adversarial training of a maxout network on MNIST.

The paper trains a dropout maxout network on J~ = .5 J(x) + .5 J(x + .25 sign(grad_x J)) and
reports, for FGSM examples at eps = .25: error 89.4% (mean confidence 97.6%, Sec. 4) without
adversarial training, 17.9% (mean confidence on errors 81.4%) with it, while the clean test
error goes from 0.94% to 0.84%. FGSM examples crafted on one model and shown to the other give
19.6% error on the adversarially trained model and 40.9% on the original one.

Here a standard and an adversarially trained copy of each model are trained (seeded, resumable
from per-epoch checkpoints), then measured on the test split: clean error, FGSM error, mean
confidence on the misclassified FGSM examples and transfer error on the whole split; PGD error,
robustness curves and the gradient-masking checks on its first `eval_limit` images. Nothing
here prints; checkpoints are written under `checkpoint_dir`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from advlab.analysis import DEFAULT_EPS, RobustnessEvaluation, evaluate_robustness
from advlab.data import Dataset, Splits
from advlab.training import AdversarialObjective, TrainConfig, default_config, error_rate, train_registered

PAPER = {
    "standard": {"clean_error": 0.0094, "fgsm_error": 0.894, "mean_confidence_on_errors": 0.976, "transfer_error": 0.409},
    "adversarial": {"clean_error": 0.0084, "fgsm_error": 0.179, "mean_confidence_on_errors": 0.814, "transfer_error": 0.196},
}
PAPER_MODEL = "maxout"
# (standard, adversarial) epochs: adversarial training converges more slowly.
EPOCHS = {"maxout": (12, 25), "cnn": (8, 20)}
TARGET_RATIO = 1 / 3  # FGSM error of the adversarially trained model over the standard one's


@dataclass
class TrainedModel:
    """One trained model and its measurements on the test split."""

    model: str
    training: str  # "standard" or "adversarial"
    checkpoint: str
    objective: dict[str, Any]
    train_config: dict[str, Any]
    resumed_from: int  # epochs found in the checkpoint when this run started
    train_seconds: float  # spent in this run
    train_error: float
    clean_error: float
    fgsm_error: float
    fgsm_confidence_on_errors: float
    transfer_error: float  # FGSM examples crafted on the other model of the pair
    pgd_error: float | None  # on the first eval_limit test images; None when PGD is not registered
    evaluation: RobustnessEvaluation
    trained: nn.Module = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        skip = {"evaluation", "trained"}
        out = {name: getattr(self, name) for name in self.__dataclass_fields__ if name not in skip}
        return {**out, "evaluation": self.evaluation.to_dict()}


@dataclass
class AdvTrainExperiment:
    data_source: str
    n_train: int
    n_test: int
    eval_limit: int
    eps: float
    alpha: float
    seed: int
    pairs: dict[str, tuple[TrainedModel, TrainedModel]]  # model -> (standard, adversarial)
    paper: dict[str, dict[str, float]]
    paper_model: str = PAPER_MODEL

    def fgsm_ratio(self, model: str) -> float:
        standard, adversarial = self.pairs[model]
        return adversarial.fgsm_error / standard.fgsm_error

    def to_dict(self) -> dict[str, Any]:
        return {
            "data_source": self.data_source, "n_train": self.n_train, "n_test": self.n_test, "eval_limit": self.eval_limit,
            "eps": self.eps, "alpha": self.alpha, "seed": self.seed, "paper": self.paper, "paper_model": self.paper_model,
            "target_ratio": TARGET_RATIO,
            "models": {name: {"fgsm_ratio": self.fgsm_ratio(name), "standard": s.to_dict(), "adversarial": a.to_dict()}
                       for name, (s, a) in self.pairs.items()},
        }


def _train(
    name: str, splits: Splits, objective: AdversarialObjective | None, epochs: int, seed: int, path: Path, progress: bool
) -> tuple[nn.Module, TrainConfig, int, float]:
    config = default_config(name, epochs=epochs, seed=seed)
    trained = train_registered(name, splits.train, config, objective=objective, checkpoint=path, resume=True, progress=progress,
                               run={"data": {"train": splits.train.fingerprint()}}, extra={"data_source": {"source": splits.source}})
    return trained.model, config, trained.history.resumed_from, trained.seconds


def _fgsm(model: nn.Module, data: Dataset, eps: float, source: nn.Module | None = None) -> tuple[float, float]:
    """(error, mean confidence on the misclassified adversarial examples) under FGSM on the whole split."""
    evaluation = evaluate_robustness(model, data.images, data.labels, attacks=["fgsm"], eps=[eps], source_model=source, batch_size=1000)
    point = evaluation.transfer[0] if source is not None else evaluation.points[0]
    return point.error, point.mean_confidence_on_errors


def goodfellow_advtrain(
    splits: Splits,
    checkpoint_dir: str | Path,
    *,
    models: Sequence[str] = ("maxout", "cnn"),
    eps: float = 0.25,
    alpha: float = 0.5,
    epochs: Mapping[str, tuple[int, int]] | None = None,
    seed: int = 0,
    eval_limit: int = 1000,
    curve_eps: Sequence[float] = DEFAULT_EPS,
    progress: bool = False,
) -> AdvTrainExperiment:
    """Standard vs FGSM-adversarially trained copies of each model, measured as in the paper.

    epochs: per model, (standard, adversarial) epochs (default `EPOCHS`). Re-running with the same
    settings and `checkpoint_dir` resumes interrupted trainings and reuses finished ones.
    """
    objective = AdversarialObjective("fgsm", eps=eps, alpha=alpha)
    epochs = {**EPOCHS, **(epochs or {})}
    subset = splits.test.take(eval_limit)
    curve = sorted({*curve_eps, eps})
    pairs = {}
    for name in models:
        trained = {}
        for training, obj, n in (("standard", None, epochs[name][0]), ("adversarial", objective, epochs[name][1])):
            path = Path(checkpoint_dir) / f"{name}-{training}.safetensors"
            trained[training] = (path, obj, *_train(name, splits, obj, n, seed, path, progress))
        results = []
        for training, other in (("standard", "adversarial"), ("adversarial", "standard")):
            path, obj, model, config, resumed, seconds = trained[training]
            fgsm_error, confidence = _fgsm(model, splits.test, eps)
            transfer_error, _ = _fgsm(model, splits.test, eps, source=trained[other][2])
            evaluation = evaluate_robustness(
                model, subset.images, subset.labels, eps=curve, seed=seed, progress=progress,
                source_model=trained["standard"][2] if training == "adversarial" else None, source_name=f"standard {name}",
            )
            results.append(TrainedModel(
                model=name, training=training, checkpoint=str(path),
                objective=obj.to_dict() if obj else {"name": "cross_entropy"}, train_config=config.to_dict(),
                resumed_from=resumed, train_seconds=seconds, train_error=error_rate(model, splits.train),
                clean_error=error_rate(model, splits.test), fgsm_error=fgsm_error, fgsm_confidence_on_errors=confidence,
                transfer_error=transfer_error,
                pgd_error=evaluation.point("pgd", eps).error if "pgd" in evaluation.attacks else None,
                evaluation=evaluation, trained=model,
            ))
        pairs[name] = (results[0], results[1])
    return AdvTrainExperiment(
        data_source=splits.source, n_train=len(splits.train), n_test=len(splits.test), eval_limit=len(subset),
        eps=eps, alpha=alpha, seed=seed, pairs=pairs, paper=PAPER,
    )

