"""The reproductions `advlab reproduce NAME` runs: name -> how to run it, its notes (computed from
its result), what `--quick` does (or None where it is refused) and the options it reads.

Every experiment is found by a plain import of its module. Reports sit above experiments in the
layering: `advlab.report.reproduce` maps the same names to their report writers and runs
`reproduce(name, request, command=...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from advlab.data import Splits, load_mnist
from advlab.errors import InputError, UnknownNameError
from advlab.experiments import goodfellow
from advlab.experiments.adversarial_generalization import adversarial_generalization, default_settings
from advlab.experiments.goodfellow_advtrain import (
    DEFAULT_MODELS,
    FIXED_EPOCHS,
    FixedEpochs,
    VARIANTS,
    PaperSchedule,
    check_models,
    goodfellow_advtrain,
)
from advlab.experiments.goodfellow_claims import ClaimsSettings, goodfellow_claims
from advlab.experiments.szegedy.run import szegedy
from advlab.experiments.szegedy.settings import SzegedySettings
from advlab.experiments.text import percent
from advlab.models.registry import get_spec
from advlab.training import default_config

PAPER_TRAIN_IMAGES = 60_000  # both papers train on MNIST's whole training set
PAPER_ENSEMBLE = 12  # Goodfellow et al. 2014, Sec. 9: maxout networks in the ensemble


def data_notes(experiments: list[Any]) -> list[str]:
    """What each FGSM experiment trained on, against the paper's 60,000-image training set (from the results)."""
    sizes = "; ".join(f"{e.data_source}: {e.n_train:,} training / {e.n_test:,} test images" for e in experiments)
    errors = ", ".join(f"{percent(e.fgsm_error)} with {e.n_train:,} training images" for e in experiments)
    return [f"The paper trains on the {PAPER_TRAIN_IMAGES:,}-image MNIST training set (its classes' share of it); these runs: {sizes}. "
            f"FGSM error here: {errors}."]


def weight_decay_notes(experiment: Any) -> list[str]:
    """What the softmax runs with other weight decays measured (the paper states none); nothing without such runs."""
    if not experiment.weight_decay_runs:
        return []
    runs = [run for run, _ in experiment.by_weight_decay()]
    confidences = ", ".join(f"{r.weight_decay:g} gives {percent(r.mean_adv_confidence)}" for r in runs)
    errors = [r.fgsm_error for r in runs]
    return [f"{experiment.data_source}: the paper gives no weight decay for its softmax model; the mean confidence on "
            f"FGSM examples depends on it ({confidences}; paper {percent(experiment.paper['mean_confidence'])}) "
            f"while the FGSM error stays between {percent(min(errors))} and {percent(max(errors))}; "
            f"advlab's default is {default_config(experiment.model).weight_decay:g}."]


CONFIDENCE_NOTE = ("Confidence is the softmax probability of the predicted class (for logistic regression, "
                   "max(sigmoid(z), 1 - sigmoid(z))).")


ADVTRAIN_NOTES = (
    "The paper reports 0.94% -> 0.84% for the original maxout network (240 units x 5 pieces per layer) and 1.14% -> "
    "0.782% (the mean of 5 seeds) for one with 1,600 units per layer, early-stopped on the adversarial validation error "
    "and retrained on all 60,000 images; its FGSM, confidence and transfer figures for the adversarially trained model "
    "are those of that final model, and its 89.4% (97.6% confidence) is Sec. 4's maxout network without adversarial "
    "training. The paper's 'original model' in the transfer figures is not named further: advlab pairs each adversarially "
    "trained model with the standard one of the same size.",
    "Optimisation is advlab's (Adam, the registered learning rate and batch size, no max-norm constraint), not the "
    "maxout paper's SGD with momentum and max-norm constraint.",
    "FGSM examples for training are crafted with dropout off (the network FGSM attacks at test time); both loss terms "
    "are computed with dropout on. See advlab.training.adversarial for why.",
    "Errors count an example wrong when either its clean or its adversarial input is misclassified; confidence is the "
    "softmax probability of the predicted class, averaged over the misclassified adversarial examples.",
    "PGD (L-inf, 20 steps of 2.5 eps / 20, 2 random restarts, early exit) runs on the first test images only, for time; "
    "with early exit its examples stop just past the decision boundary, so their confidence is not comparable to FGSM's.",
    "Single-step (FGSM) adversarial training can flatten the loss along the FGSM direction only (label leaking, "
    "Kurakin et al. 2016; gradient masking, Tramer et al. 2018): read the FGSM rows next to the PGD rows and the checks.",
    "The paper does not train a CNN on MNIST; the CNN rows have no paper column.",
)


@dataclass(frozen=True)
class Request:
    """What the caller asks of a reproduction (the CLI's options)."""

    data_dir: str | None
    out: Path
    seed: int = 0
    quick: bool = False
    images: int | None = None  # szegedy: images attacked per model
    eps: float = 0.25  # goodfellow-*: the FGSM budget
    progress: bool = True
    device: str = "cpu"  # adversarial-generalization: where the models train
    jobs: int = 1  # adversarial-generalization: trainings run at once (worker processes)
    epochs: int | None = None  # adversarial-generalization, goodfellow-advtrain: epochs per training (None: the default schedule)
    train_images: int | None = None  # adversarial-generalization: first N training images (None: all)
    models: tuple[str, ...] | None = None  # goodfellow-advtrain: which model pairs, in order (None: all)
    seeds: int = 1  # goodfellow-advtrain: train each pair with seeds seed, seed + 1, ..., seed + seeds - 1


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    run: Callable[[Request], Any]
    notes: Callable[[Any], list[str]] = lambda result: []  # computed from the result: what it ran, not what was planned
    quick: str | None = None  # what --quick does; None: --quick is refused
    options: tuple[str, ...] = field(default=())  # Request fields beyond data_dir/out/seed/quick it reads
    # its report adds the adversarial-training generalization study found in the sibling folder
    # `adversarial-generalization` of its output (results/adversarial-generalization beside results/szegedy)
    with_generalization: bool = False


def _goodfellow(kind: str) -> Callable[[Request], Any]:
    def run(request: Request) -> list[Any]:
        experiment = goodfellow.goodfellow_fig2 if kind == "fig2" else goodfellow.goodfellow_softmax
        sources = [request.data_dir] if request.data_dir is None else [request.data_dir, None]
        return [experiment(load_mnist(s), eps=request.eps, seed=request.seed, progress=request.progress) for s in sources]

    return run


def _szegedy(request: Request) -> Any:
    settings = SzegedySettings.quick(seed=request.seed) if request.quick else SzegedySettings(seed=request.seed)
    if request.images is not None:
        settings = replace(settings, n_attack=request.images, n_attack_test=request.images)
    return szegedy(quick_prefix(load_mnist(request.data_dir), request.quick), settings, work_dir=request.out, progress=request.progress)


QUICK_TRAIN_IMAGES = 6_309  # --quick trains on at most MNIST's first 6,309 images (../shared/data/mnist), even from the full set


def quick_prefix(splits: Splits, quick: bool) -> Splits:
    """The splits a run trains on: all of them, or with --quick the first QUICK_TRAIN_IMAGES training images."""
    if not quick or len(splits.train) <= QUICK_TRAIN_IMAGES:
        return splits
    return Splits(splits.train.take(QUICK_TRAIN_IMAGES), splits.test, f"{splits.source} (quick: first {QUICK_TRAIN_IMAGES:,} training images)")


def advtrain_notes(result: Any) -> list[str]:
    """The adversarial-training report's notes: its training set and schedule against the paper's, then the fixed notes."""
    schedule = result.schedule
    if schedule["name"] == FIXED_EPOCHS:
        selection = "each model trained a fixed number of epochs (its table's 'epochs' row), last-epoch weights"
    else:
        share = Fraction(schedule["validation_fraction"]).limit_denominator(1000)
        selection = (f"each model early-stopped on the last {share} of the training images (MNIST: the last 10,000 of 60,000) "
                     f"(validation error: clean for standard, FGSM for adversarial training; patience {schedule['patience']} "
                     f"epochs, at most {schedule['max_epochs']}), then retrained on all of them for the epoch of the lowest "
                     "validation error")
    return [f"The paper trains on MNIST's {PAPER_TRAIN_IMAGES:,} training images; this run on {result.n_train:,} "
            f"({result.data_source}): compare clean errors with the paper's only when the two agree. Schedule: {selection}.",
            *ADVTRAIN_NOTES]


def szegedy_notes(result: Any) -> list[str]:
    """The Szegedy report's notes, from the training configurations and image counts the run used."""
    by_model: dict[str, list[str]] = {}
    for row in result.models + result.split_models:
        config = row.training
        if config:
            decay = " cosine-decayed to 0" if config.get("lr_schedule") == "cosine" else ""
            schedule = f"{config['optimizer']} lr {config['lr']:g}{decay}, batch {config['batch_size']}, {config['epochs']} epochs"
            by_model.setdefault(schedule, []).append(row.label)
    schedules = "; ".join(f"{', '.join(dict.fromkeys(labels))}: {schedule}" for schedule, labels in by_model.items())
    settings = result.settings
    return [
        "FC10(lambda): advlab minimises mean cross-entropy + lambda * 0.5 * ||W||^2 (the paper does not say how its "
        "lambda is normalised).",
        f"Training (fixed epochs, the paper's weight decays; AE400-10's epochs are its autoencoder pretraining's and then "
        f"the classifier's, {_autoencoder_words()}): {schedules}.",
        f"Attacked: {settings['n_attack']} seeded random training images per model (Tables 1-2) and {settings['n_attack_test']} "
        f"test images per split model (Table 4) of the {result.n_train:,} training / {result.n_test:,} test images ({result.data_source}).",
    ]


def _autoencoder_words() -> str:
    """How the registered AE400-10 trains, in words (its architecture keywords)."""
    arch = get_spec("ae400-10").architecture
    sparse = (f"sparse (target mean activation {arch['sparsity']:g}, penalty weight {arch['sparsity_weight']:g})"
              if arch["sparsity_weight"] > 0 else "not sparse")
    return f"the autoencoder {sparse}, its encoder {'fine-tuned' if arch['fine_tune'] else 'fixed while the classifier trains'}"


QUICK_ADVTRAIN = {"train": 1000, "test": 1000, "eval_limit": 100, "epochs": {"maxout": (1, 1), "maxout-1600": (1, 1), "cnn": (1, 1)}}


def _advtrain(request: Request) -> Any:
    splits = load_mnist(request.data_dir)
    kwargs: dict[str, Any] = {"schedule": PaperSchedule()}
    out = request.out / "checkpoints"
    if request.quick:
        q = QUICK_ADVTRAIN
        splits = Splits(splits.train.take(q["train"]), splits.test.take(q["test"]), f"{splits.source} (quick: first {q['train']} / {q['test']})")
        kwargs = {"schedule": FixedEpochs(q["epochs"]), "eval_limit": q["eval_limit"], "curve_eps": (0.0, 0.1, 0.25)}
        out = request.out / "checkpoints-quick"
    if request.epochs is not None:  # fixed epochs instead of early stopping, for every model and both trainings
        kwargs["schedule"] = FixedEpochs({name: (request.epochs, request.epochs) for name in VARIANTS})
    return goodfellow_advtrain(splits, out, models=request.models or DEFAULT_MODELS, eps=request.eps,
                               seeds=range(request.seed, request.seed + request.seeds), progress=request.progress, **kwargs)


def _generalization(request: Request) -> Any:
    settings = default_settings(request.data_dir, quick=request.quick, epochs=request.epochs, train_images=request.train_images)
    return adversarial_generalization(settings, request.out, progress=request.progress, device=request.device, jobs=request.jobs)


GENERALIZATION = "adversarial-generalization"


def _claims(request: Request) -> Any:
    quick = ClaimsSettings.quick(seed=request.seed, eps=request.eps)
    settings = quick if request.quick else ClaimsSettings(seed=request.seed, eps=request.eps)
    return goodfellow_claims(quick_prefix(load_mnist(request.data_dir), request.quick), settings, work_dir=request.out,
                             progress=request.progress)


def claims_notes(result: Any) -> list[str]:
    """What the goodfellow-claims run did where the paper is silent or was not followed (from its settings)."""
    s = result.settings
    return [
        f"Trained on {result.n_train:,} images ({result.data_source}); the paper on MNIST's {PAPER_TRAIN_IMAGES:,}. Every maxout "
        f"network trains {s['maxout_epochs']} fixed epochs and keeps its last weights (the paper: to convergence, early stopping).",
        f"The ensemble has {s['members']} members, maxout networks of seeds {s['seed']}..{s['seed'] + s['members'] - 1}"
        + (" (as the paper's). " if s["members"] == PAPER_ENSEMBLE else f" (the paper: {PAPER_ENSEMBLE}; fewer, to fit the CPU time "
           f"this run had): the claims are tested on a {s['members']}-member ensemble. ")
        + "It outputs the mean of its members' softmax probabilities; FGSM against it ascends the cross-entropy of that mean; "
        "\"one member\" is the first.",
        "Noise controls: the paper states the noise, not how it enters training; advlab trains on 0.5 J(x) + 0.5 J(clip(x + noise)), "
        "the mix of its adversarial objective, with the noise redrawn for every minibatch. Their \"confidence\" is read as the mean "
        "confidence on the misclassified FGSM examples.",
        "RBF network: beta is diagonal and negative definite (exp-parametrised), the ten units are independent (one-vs-all, "
        "not a softmax, as the paper's 1.2% mean confidence requires), trained on the sum of their binary cross-entropies; FGSM "
        "ascends that cost. Confidence is the predicted unit's p_k. The maxout with independent sigmoids is read the same way.",
        "FGSM examples are clipped to [0, 1]. Rubbish samples are N(0, I) draws, not clipped (as the paper's). The fooling search "
        f"takes one sign step of eps = {s['eps']:g} towards each class from {s['fooling_samples']} Gaussian samples per class and "
        "counts a success when the class gets > 0.5 probability; the paper ran it on CIFAR-10 only.",
    ]


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment(
            "goodfellow-fig2", "Goodfellow et al. 2014, Fig. 2: logistic regression, MNIST 3 vs 7", _goodfellow("fig2"),
            notes=lambda result: [*data_notes(result), CONFIDENCE_NOTE,
                                  "FGSM on a linear model moves every pixel by exactly eps * sign(w) (toward the other class), "
                                  "clipped to [0, 1]: panel (d) is panel (c) plus a scaled panel (b)."],
            quick="already takes seconds: --quick changes nothing", options=("eps",),
        ),
        Experiment(
            "goodfellow-softmax", "Goodfellow et al. 2014, Sec. 5: softmax regression on MNIST", _goodfellow("softmax"),
            notes=lambda result: [*data_notes(result), CONFIDENCE_NOTE, *(n for e in result for n in weight_decay_notes(e))],
            quick="about a minute on full MNIST (three trainings): --quick changes nothing", options=("eps",),
        ),
        Experiment(
            "goodfellow-advtrain", "Goodfellow et al. 2014, Sec. 6: adversarial training", _advtrain,
            notes=advtrain_notes,
            with_generalization=True,
            quick=(f"1 epoch per model on the first {QUICK_ADVTRAIN['train']} training and {QUICK_ADVTRAIN['test']} test "
                   f"images (no early stopping), PGD and curves on {QUICK_ADVTRAIN['eval_limit']}: a smoke run, not the paper's numbers"),
            options=("eps", "models", "epochs", "seeds"),
        ),
        Experiment(
            "szegedy", "Szegedy et al. 2013, Intriguing properties of neural networks", _szegedy,
            notes=szegedy_notes,
            quick=(f"1 epoch per model on at most the first {QUICK_TRAIN_IMAGES:,} training images, 6 images per model, a short "
                   "attack: a smoke run of every stage, not the paper's numbers"),
            options=("images",), with_generalization=True,
        ),
        Experiment(
            "goodfellow-claims", "Goodfellow et al. 2014, Sec. 6-9 and App. A: noise controls, RBF, transfer, ensembles, rubbish class",
            _claims, notes=claims_notes,
            quick=(f"1 epoch per maxout, 3 ensemble members, 1,000 Gaussian samples, on at most the first {QUICK_TRAIN_IMAGES:,} "
                   "training images: a smoke run of every stage, not the paper's numbers"),
            options=("eps",),
        ),
        Experiment(
            GENERALIZATION, "Adversarial training and clean test error (Szegedy Sec. 4.2, Goodfellow Sec. 6)", _generalization,
            notes=lambda result: ["The papers trained FC100-100-10 and the maxout network to convergence on MNIST's 60,000 images; each run "
                   "here has the epochs and training images its table row states (by default every training image of the "
                   "set and the model's registered epochs), and the comparison is paired: same data, epochs, seed and "
                   "last-epoch weights with and without adversarial training.",
                   "Szegedy et al. also made adversarial examples for the hidden layers; advlab's pool holds input examples only."],
            quick="300 embedded images, 1 epoch, 2 seeds, a tiny pool: a smoke run, not the papers' numbers",
            options=("device", "jobs", "epochs", "train_images"),
        ),
    )
}


def get_experiment(name: str) -> Experiment:
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise UnknownNameError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}") from None


def check_request(experiment: Experiment, request: Request) -> None:
    """Refuse, before any work, what the experiment cannot honour."""
    if request.quick and experiment.quick is None:
        raise InputError(f"{experiment.name} has no --quick mode")
    defaults = Request(data_dir=None, out=request.out)
    for option in ("images", "device", "jobs", "epochs", "train_images", "models", "seeds"):
        if getattr(request, option) != getattr(defaults, option) and option not in experiment.options:
            users = sorted(e.name for e in EXPERIMENTS.values() if option in e.options)
            raise InputError(f"--{option.replace('_', '-')} applies to {', '.join(users)} only, not {experiment.name}")
    if request.models is not None:
        check_models(request.models)
    if request.seeds < 1 or request.seed + request.seeds > 2**63:
        raise InputError(f"--seeds must be >= 1 with --seed + --seeds <= 2**63, got --seed {request.seed} --seeds {request.seeds}")
    if request.images is not None and request.images < 1:
        raise InputError(f"--images must be >= 1, got {request.images}")
