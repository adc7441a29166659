"""Goodfellow, Shlens & Szegedy 2014, "Explaining and Harnessing Adversarial Examples".

- Fig. 2: logistic regression on MNIST 3s vs 7s; FGSM at eps=.25 takes the error from 1.6% to 99%.
  For a linear model the FGSM perturbation is exactly eps * sign(w) up to the label's sign.
- Sec. 5: a shallow softmax classifier has 99.9% error at eps=.25, mean confidence 79.3%. The
  paper gives no weight decay; the confidence depends on it, so the run measures that too.

Each function trains deterministically from a seed, attacks the test split and returns a typed
result; nothing here prints or writes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from advlab.attacks import FGSM, AttackResult
from advlab.data import Splits
from advlab.models.linear import linear_weights
from advlab.training import TrainConfig, default_config, error_rate, train_registered
from advlab.validation import check_eps

PAPER_FIG2 = {"clean_error": 0.016, "fgsm_error": 0.99, "eps": 0.25}
PAPER_SOFTMAX = {"fgsm_error": 0.999, "mean_confidence": 0.793, "eps": 0.25}
# Sec. 5's model has no stated weight decay: the sensitivity runs retrain it with these
SOFTMAX_WEIGHT_DECAYS = (1e-4, 1e-3)
# the paper's train / test images: Fig. 2's model saw only the 3s and 7s of MNIST
PAPER_IMAGES = {"logreg": "3s and 7s of MNIST only: about 12,400 / 2,038", "softmax": "60,000 / 10,000"}
FIG2_CLASSES = (3, 7)


@dataclass(frozen=True)
class WeightDecayRun:
    """The same model and data retrained with another weight decay, attacked the same way."""

    weight_decay: float | tuple[float, ...]
    train_error: float
    clean_error: float
    fgsm_error: float
    mean_adv_confidence: float  # over all adversarial inputs (the paper's 79.3% figure)


@dataclass
class FGSMExperiment:
    """A model trained on `data_source`, evaluated clean and under FGSM on its test split."""

    model: str
    data_source: str
    classes: list[int] | None
    n_train: int
    n_test: int
    eps: float
    seed: int
    train_config: dict[str, Any]
    train_error: float
    clean_error: float
    fgsm_error: float
    mean_adv_confidence: float  # softmax probability of the predicted class, all adversarial inputs
    mean_confidence_on_errors: float  # same, over the misclassified adversarial inputs
    train_seconds: float
    attack_seconds: float
    paper: dict[str, float]
    paper_images: str  # the paper's train / test images, in words
    attack: AttackResult = field(repr=False)
    weights: torch.Tensor = field(repr=False)  # the linear model's weight matrix (C x n, or 1 x n for logistic)
    trained: torch.nn.Module = field(repr=False)
    test_images: torch.Tensor = field(repr=False)
    weight_decay_runs: list[WeightDecayRun] = field(default_factory=list)  # empty unless asked for

    def by_weight_decay(self) -> list[tuple[WeightDecayRun, bool]]:
        """This run and the runs with other weight decays, by weight decay; True marks this run."""
        own = WeightDecayRun(self.train_config["weight_decay"], self.train_error, self.clean_error, self.fgsm_error,
                             self.mean_adv_confidence)
        return sorted([(own, True), *((run, False) for run in self.weight_decay_runs)], key=lambda pair: pair[0].weight_decay)

    def to_dict(self) -> dict[str, Any]:
        """The numbers, JSON-ready (the model, images and per-example arrays left out)."""
        skip = {"attack", "trained", "test_images", "weights", "weight_decay_runs"}
        numbers = {name: getattr(self, name) for name in self.__dataclass_fields__ if name not in skip}
        return {**numbers, "weight_decay_runs": [asdict(run) for run in self.weight_decay_runs]}


def run_fgsm_experiment(
    model_name: str,
    splits: Splits,
    *,
    eps: float,
    seed: int,
    paper: dict[str, float],
    classes: tuple[int, ...] | None = None,
    config: TrainConfig | None = None,
    weight_decays: tuple[float, ...] = (),
    progress: bool = False,
) -> FGSMExperiment:
    """Train `model_name` (seeded) on the train split, then FGSM the whole test split; with
    `weight_decays`, retrain and attack once more with each (the sensitivity to that setting)."""
    check_eps(eps, (0.0, 1.0))  # before the training, not after it
    data = splits.select_classes(classes) if classes else splits
    config = config or default_config(model_name, seed=seed)
    trained = train_registered(model_name, data.train, config, progress=progress)
    model, config, train_seconds = trained.model, trained.config, trained.seconds
    result = FGSM(model, eps=eps)(data.test.images, data.test.labels)
    own = _measured(config.weight_decay, model, data, result)
    wrong = ~result.adv_correct
    weight_decay_runs = []
    for weight_decay in weight_decays:
        other = train_registered(model_name, data.train, replace(config, weight_decay=weight_decay), progress=progress).model
        weight_decay_runs.append(_measured(weight_decay, other, data, FGSM(other, eps=eps)(data.test.images, data.test.labels)))
    return FGSMExperiment(
        model=model_name,
        data_source=splits.source,
        classes=list(classes) if classes else None,
        n_train=len(data.train),
        n_test=len(data.test),
        eps=eps,
        seed=seed,
        train_config=config.to_dict(),
        train_error=own.train_error,
        clean_error=own.clean_error,
        fgsm_error=own.fgsm_error,
        mean_adv_confidence=own.mean_adv_confidence,
        mean_confidence_on_errors=float(result.adv_confidence[wrong].double().mean()) if bool(wrong.any()) else float("nan"),
        train_seconds=train_seconds,
        attack_seconds=result.seconds,
        paper=paper,
        paper_images=PAPER_IMAGES.get(model_name, "—"),
        weight_decay_runs=weight_decay_runs,
        attack=result,
        weights=linear_weights(model)[0].detach().cpu(),
        trained=model,
        test_images=data.test.images,
    )


def _measured(weight_decay: float | tuple[float, ...], model: torch.nn.Module, data: Splits, result: AttackResult) -> WeightDecayRun:
    """A trained model's training error and its clean and FGSM figures on the test split (`result`)."""
    return WeightDecayRun(
        weight_decay=weight_decay,
        train_error=error_rate(model, data.train),
        clean_error=float((~result.clean_correct).double().mean()),
        fgsm_error=float((~result.adv_correct).double().mean()),
        mean_adv_confidence=float(result.adv_confidence.double().mean()),
    )


def goodfellow_fig2(splits: Splits, *, eps: float = 0.25, seed: int = 0, progress: bool = False) -> FGSMExperiment:
    """Fig. 2: logistic regression on 3s (label 0) vs 7s (label 1), FGSM at eps."""
    return run_fgsm_experiment(
        "logreg", splits, eps=eps, seed=seed, paper=PAPER_FIG2, classes=FIG2_CLASSES, progress=progress
    )


def goodfellow_softmax(
    splits: Splits,
    *,
    eps: float = 0.25,
    seed: int = 0,
    weight_decays: tuple[float, ...] = SOFTMAX_WEIGHT_DECAYS,
    progress: bool = False,
) -> FGSMExperiment:
    """Sec. 5: softmax regression on all ten digits, FGSM at eps; retrained with each of
    `weight_decays` too (the paper states none, and the confidence depends on it)."""
    return run_fgsm_experiment("softmax", splits, eps=eps, seed=seed, paper=PAPER_SOFTMAX,
                               weight_decays=weight_decays, progress=progress)
