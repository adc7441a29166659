"""Szegedy et al. 2013, "Intriguing properties of neural networks", reproduced on MNIST.

- Sec. 3 (units vs directions): the test images that most activate a hidden unit are no more
  coherent than those that most activate a random direction of the same layer.
- Sec. 4.2, Table 1: the model zoo's train and test errors and the average minimal distortion
  sqrt(sum r^2 / n) the attack needs to misclassify each attacked training image.
- Table 2: those adversarial examples fed to every model of the zoo, beside Gaussian noise.
- Tables 3-4: models trained on disjoint halves P1, P2 of the training set, each fed the
  others' adversarial examples (test images), as found and magnified to distortion 0.1.
- Equal-size noise: each model on Gaussian and uniform noise with exactly the per-example L2
  norm of its adversarial perturbations.
- Sec. 4.3: per-layer upper Lipschitz bounds, their product, and the largest
  ||f(x + r) - f(x)|| / ||r|| seen on the adversarial examples.

`szegedy(splits, settings, work_dir=...)` caches every trained model and every attack under
`work_dir/cache/<fingerprint of the settings and data>/` (atomic writes), and each cheaper
stage as JSON, so an interrupted run resumes where it stopped. Nothing here prints.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from advlab.analysis.lipschitz import LayerBound, layer_bounds, network_bound, observed_ratio
from advlab.analysis.noise import equal_norm_noise, gaussian_noise, perturb_to_norm
from advlab.analysis.transfer import distortion, error_rate_on, transfer_table
from advlab.analysis.units import UnitsVsDirections, layer_activations, units_vs_directions
from advlab.attacks import AttackResult, make_attack
from advlab.data import Dataset, Splits
from advlab.errors import DataError, InputError
from advlab.exact import minimal_perturbation
from advlab.io import write_json_atomic
from advlab.models import SoftmaxRegression, build_model, get_spec
from advlab.training import TrainConfig, error_rate, load_checkpoint, save_checkpoint, train_model

T = TypeVar("T")

ZOO = ("fc10-1e-4", "fc10-1e-2", "fc10-1", "fc100-100-10", "fc200-200-10", "ae400-10")
SPLIT = (("fc100-100-10", "P1"), ("fc123-456-10", "P1"), ("fc100-100-10", "P2"))

# The paper's numbers. Table 1: (train error, test error, mean minimal distortion).
PAPER_TABLE1 = {
    "FC10(1e-4)": (0.067, 0.074, 0.062),
    "FC10(1e-2)": (0.10, 0.094, 0.1),
    "FC10(1)": (0.212, 0.20, 0.14),
    "FC100-100-10": (0.0, 0.0164, 0.058),
    "FC200-200-10": (0.0, 0.0154, 0.065),
    "AE400-10": (0.0057, 0.019, 0.086),
}
# Table 2 (rows: examples made for / noise; columns: the model fed), the cells quoted here.
PAPER_TABLE2 = {
    ("FC10(1e-4)", "FC100-100-10"): 0.02,
    ("FC10(1e-4)", "AE400-10"): 0.027,
    ("FC100-100-10", "FC10(1e-4)"): 0.289,
    ("FC100-100-10", "AE400-10"): 0.02,
    ("Gaussian noise, stddev 0.1", "FC10(1e-4)"): 0.05,
    ("Gaussian noise, stddev 0.1", "FC100-100-10"): 0.0,
    ("Gaussian noise, stddev 0.1", "AE400-10"): 0.008,
    ("Gaussian noise, stddev 0.3", "FC10(1e-4)"): 0.156,
    ("Gaussian noise, stddev 0.3", "FC100-100-10"): 0.05,
    ("Gaussian noise, stddev 0.3", "AE400-10"): 0.031,
}
# Table 4: FC100-100-10 (P1) examples fed to the other two models, as found and magnified.
PAPER_TABLE4 = {
    ("FC100-100-10", "FC123-456-10"): 0.262,
    ("FC100-100-10", "FC100-100-10'"): 0.059,
    ("FC100-100-10, magnified to 0.1", "FC123-456-10"): 0.98,
    ("FC100-100-10, magnified to 0.1", "FC100-100-10'"): 0.43,
}
PAPER_TABLE4_NOISE = (0.026, 0.028)  # Gaussian noise at stddev 0.1: 2.6% to 2.8% on all three


def display_name(model: str, part: str | None = None) -> str:
    """The paper's name: fc10-1e-4 -> FC10(1e-4), fc100-100-10 -> FC100-100-10; P2 adds a prime."""
    name = f"FC10({model[len('fc10-'):]})" if model.startswith("fc10-") else model.upper()
    return name + "'" if part == "P2" else name


@dataclass(frozen=True)
class SzegedySettings:
    """What a run does; its fingerprint (with the data's) names the cache folder."""

    zoo: tuple[str, ...] = ZOO
    split: tuple[tuple[str, str], ...] = SPLIT  # (model, "P1" or "P2") for Tables 3-4
    n_attack: int = 300  # training images attacked per zoo model (Tables 1, 2, Sec. 4.3)
    n_attack_test: int = 300  # test images attacked per split model (Table 4)
    attack: str = "lbfgs"
    attack_params: tuple[tuple[str, Any], ...] = ()  # keyword arguments of the attack
    max_epochs: int | None = None  # cap on every model's training epochs (quick runs)
    noise_stddevs: tuple[float, ...] = (0.1, 0.3)
    magnify_to: float = 0.1
    random_targets: bool = True  # Table 1 also with a random target class per image (a second attack)
    units_model: str = "fc100-100-10"
    units_layer: str = "act2"  # the model's last hidden layer (after its sigmoid)
    n_units: int = 8
    n_random: int = 8
    top_k: int = 8
    figure_examples: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_attack < 1 or self.n_attack_test < 1:
            raise InputError(f"need at least one image to attack, got {self.n_attack}, {self.n_attack_test}")
        if self.units_model not in self.zoo:
            raise InputError(f"units_model {self.units_model!r} must be one of the zoo {list(self.zoo)}")
        if any(part not in ("P1", "P2") for _, part in self.split):
            raise InputError(f"split parts must be P1 or P2, got {[p for _, p in self.split]}")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise InputError(f"max_epochs must be >= 1, got {self.max_epochs}")

    @classmethod
    def quick(cls, seed: int = 0) -> SzegedySettings:
        """A few epochs and 20 images per model: every stage runs, in about a minute."""
        return cls(
            n_attack=20, n_attack_test=20, max_epochs=2, attack_params=(("search_steps", 6), ("max_iter", 30)),
            n_units=4, n_random=4, top_k=5, figure_examples=4, seed=seed,
        )

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps({**asdict(self), "attack_params": dict(self.attack_params)}))


# ---- typed results --------------------------------------------------------------------------
@dataclass
class ModelEval:
    """A trained model: Table 1 (zoo) or Table 3 (split) row."""

    key: str
    label: str
    model: str
    trained_on: str  # "train", "P1" or "P2"
    n_train: int
    train_error: float
    test_error: float
    train_seconds: float


@dataclass
class MinimalDistortion:
    """Table 1's last column: the attack's smallest perturbations on `n_attacked` training images.

    Averages are over the images the model classifies correctly and the attack misclassifies.
    `exact_mean_distortion`: the true minimum over the same images (linear models only).
    `random_target_*`: the same attack asked for a uniformly drawn wrong class per image
    (averaged over the images it reaches that class on), when the settings ask for it.
    """

    key: str
    n_attacked: int
    n_clean_correct: int
    success_rate: float  # among the correctly classified images
    mean_distortion: float
    median_distortion: float
    exact_mean_distortion: float | None
    seconds: float
    random_target_mean_distortion: float | None = None
    random_target_success_rate: float | None = None


@dataclass
class TransferTable:
    """error[i][j]: error of model `columns[j]` on the images of row i (its true labels)."""

    rows: list[str]
    columns: list[str]
    error: list[list[float]]
    mean_distortion: list[float]
    n: list[int]

    def cell(self, row: str, column: str) -> float:
        return self.error[self.rows.index(row)][self.columns.index(column)]


@dataclass
class NoiseComparison:
    """A model on its adversarial examples and on random noise of exactly their L2 norms."""

    key: str
    n: int
    mean_distortion: float
    adversarial_error: float
    gaussian_error: float
    uniform_error: float


@dataclass
class LipschitzBounds:
    key: str
    layers: list[LayerBound]
    network_bound: float
    max_observed_ratio: float  # max ||f(x + r) - f(x)|| / ||r|| over the adversarial examples
    mean_observed_ratio: float
    n: int

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LipschitzBounds:
        return cls(**{**d, "layers": [LayerBound(**b) for b in d["layers"]]})


@dataclass
class SzegedyResult:
    settings: dict[str, Any]
    data_source: str
    n_train: int
    n_test: int
    models: list[ModelEval]  # Table 1
    distortion: list[MinimalDistortion]  # Table 1
    transfer: TransferTable  # Table 2
    split_models: list[ModelEval]  # Table 3
    split_transfer: TransferTable  # Table 4
    noise: list[NoiseComparison]
    lipschitz: list[LipschitzBounds]
    units: UnitsVsDirections
    seconds: dict[str, float]  # wall time per stage in this run (0 for a stage read from the cache)
    compute_seconds: dict[str, float]  # training and attack time recorded in the cache when first computed
    cache_dir: str
    # for figures, not in to_dict: per zoo model (x, x_adv, label, adversarial prediction)
    examples: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = field(repr=False, default_factory=dict)
    unit_images: torch.Tensor | None = field(repr=False, default=None)  # (units + random, k, 1, 28, 28)

    def to_dict(self) -> dict[str, Any]:
        skip = {"examples", "unit_images"}
        out = {k: v for k, v in asdict(self).items() if k not in skip}
        out["units"].update(mean_unit_purity=self.units.mean_unit_purity, mean_random_purity=self.units.mean_random_purity)
        out["paper"] = {
            "table1": PAPER_TABLE1,
            "table2": {f"{r} -> {c}": v for (r, c), v in PAPER_TABLE2.items()},
            "table4": {f"{r} -> {c}": v for (r, c), v in PAPER_TABLE4.items()},
            "table4_noise_range": PAPER_TABLE4_NOISE,
        }
        return out


# ---- the run ----------------------------------------------------------------------------------
class _Cache:
    """Files under one folder, each written atomically; a stage whose file exists is not rerun."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def stage(self, name: str, compute: Callable[[], T], encode: Callable[[T], Any], decode: Callable[[Any], T]) -> tuple[T, float]:
        path = self.root / "stages" / f"{name}.json"
        if path.is_file():
            return decode(json.loads(path.read_text())), 0.0
        start = time.perf_counter()
        value = compute()
        write_json_atomic(path, encode(value))
        return value, time.perf_counter() - start


def _fingerprint(settings: SzegedySettings, splits: Splits) -> str:
    digest = hashlib.sha256(json.dumps(settings.to_dict(), sort_keys=True).encode())
    for split in (splits.train, splits.test):
        digest.update(split.labels.numpy().tobytes())
        digest.update(np.float64(split.images.double().sum()).tobytes())
    return digest.hexdigest()[:16]


def _generator(settings: SzegedySettings, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(settings.seed * 1009 + stream)


def _halves(train: Dataset, settings: SzegedySettings) -> dict[str, Dataset]:
    order = torch.randperm(len(train), generator=_generator(settings, 1))
    half = len(train) // 2
    return {
        part: Dataset(train.images[index], train.labels[index], f"{train.name}:{part}")
        for part, index in (("P1", order[:half]), ("P2", order[half:]))
    }


def _subset(data: Dataset, n: int, generator: torch.Generator) -> Dataset:
    index = torch.randperm(len(data), generator=generator)[:n]
    return Dataset(data.images[index], data.labels[index], f"{data.name}[{min(n, len(data))} drawn]")


def _train(key: str, model_name: str, part: str, data: Dataset, test: Dataset, settings: SzegedySettings,
           cache: _Cache, progress: bool) -> tuple[nn.Module, ModelEval]:
    path = cache.root / "models" / f"{key}.safetensors"
    if path.is_file():
        checkpoint = load_checkpoint(path, expected_model=model_name)
        model, meta = checkpoint.model, checkpoint.metadata
    else:
        spec = get_spec(model_name)
        training = dict(spec.training)
        if settings.max_epochs is not None:
            training["epochs"] = min(training.get("epochs", settings.max_epochs), settings.max_epochs)
        config = TrainConfig(**{**training, "seed": settings.seed})
        torch.manual_seed(settings.seed)
        model = build_model(model_name)
        start = time.perf_counter()
        train_model(model, data, config, progress=progress)
        meta = {
            "training": config.to_dict(),
            "trained_on": part,
            "n_train": len(data),
            "metrics": {"train_error": error_rate(model, data), "test_error": error_rate(model, test)},
            "train_seconds": time.perf_counter() - start,
        }
        save_checkpoint(path, model, model_name=model_name, architecture=spec.architecture, metadata=meta)
    row = ModelEval(key, display_name(model_name, None if part == "train" else part), model_name, part, meta["n_train"],
                    meta["metrics"]["train_error"], meta["metrics"]["test_error"], meta["train_seconds"])
    return model.eval(), row


def _attack(
    key: str, model: nn.Module, data: Dataset, settings: SzegedySettings, cache: _Cache, targets: str | None = None
) -> AttackResult:
    """The attack's result on `data` (untargeted, or with `targets`), from the cache or run now (and cached)."""
    path = cache.root / "attacks" / f"{key}.npz"
    if path.is_file():
        with contextlib.suppress(DataError):  # a file from an older version, or cut short: recompute it
            return AttackResult.load(path, data.images)
    attack = make_attack(settings.attack, model, seed=settings.seed, **dict(settings.attack_params))
    result = attack(data.images, data.labels, targets=targets)
    result.save(path)
    return result


def _adversarial(result: AttackResult) -> torch.Tensor:
    """Mask of the attacked images that are real adversarial examples: correct clean, wrong after."""
    return result.clean_correct & result.success


def _minimal_distortion(key: str, model: nn.Module, result: AttackResult, targeted: AttackResult | None) -> MinimalDistortion:
    ok = _adversarial(result)
    found = result.distortion[ok].double()
    exact = None
    if isinstance(model, SoftmaxRegression) and bool(ok.any()):
        minimum = minimal_perturbation(model, result.x[ok], result.labels[ok])
        exact = float((minimum.distance / math.sqrt(result.x[0].numel())).mean())
    correct = int(result.clean_correct.sum())
    return MinimalDistortion(
        key=key,
        n_attacked=len(result),
        n_clean_correct=correct,
        success_rate=float(ok.sum()) / correct if correct else float("nan"),
        mean_distortion=float(found.mean()) if found.numel() else float("nan"),
        median_distortion=float(found.median()) if found.numel() else float("nan"),
        exact_mean_distortion=exact,
        seconds=result.seconds,
        **({} if targeted is None else _targeted_summary(targeted)),
    )


def _targeted_summary(result: AttackResult) -> dict[str, float]:
    reached = result.clean_correct & result.success
    correct = int(result.clean_correct.sum())
    return {
        "random_target_mean_distortion": float(result.distortion[reached].double().mean()) if bool(reached.any()) else float("nan"),
        "random_target_success_rate": float(reached.sum()) / correct if correct else float("nan"),
    }


def _table(sets: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]], models: dict[str, nn.Module]) -> TransferTable:
    """sets: row -> (clean images, perturbed images, labels)."""
    errors = transfer_table({row: (x_new, y) for row, (_, x_new, y) in sets.items()}, models)
    return TransferTable(
        rows=list(sets),
        columns=list(models),
        error=[[errors[row][column] for column in models] for row in sets],
        mean_distortion=[float(distortion(x, x_new).mean()) if len(y) else float("nan") for x, x_new, y in sets.values()],
        n=[len(y) for _, _, y in sets.values()],
    )


def _transfer_sets(results: dict[str, AttackResult], labels: dict[str, str]) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    sets = {}
    for key, result in results.items():
        ok = _adversarial(result)
        sets[labels[key]] = (result.x[ok], result.x_adv[ok], result.labels[ok])
    return sets


def szegedy(splits: Splits, settings: SzegedySettings | None = None, *, work_dir: str | Path, progress: bool = False) -> SzegedyResult:
    """Run (or resume) every experiment; see the module docstring."""
    settings = settings or SzegedySettings()
    cache = _Cache(Path(work_dir) / "cache" / _fingerprint(settings, splits))
    seconds: dict[str, float] = {}
    bar = lambda items, desc: tqdm(items, desc=desc, disable=None if progress else True, leave=False)  # noqa: E731

    # Table 1 and 3 models
    start = time.perf_counter()
    zoo: dict[str, nn.Module] = {}
    rows: list[ModelEval] = []
    for name in bar(settings.zoo, "train zoo"):
        zoo[name], row = _train(name, name, "train", splits.train, splits.test, settings, cache, progress)
        rows.append(row)
    halves = _halves(splits.train, settings)
    split_models: dict[str, nn.Module] = {}
    split_rows: list[ModelEval] = []
    for name, part in bar(settings.split, "train P1/P2"):
        key = f"{name}@{part}"
        split_models[key], row = _train(key, name, part, halves[part], splits.test, settings, cache, progress)
        split_rows.append(row)
    seconds["train"] = time.perf_counter() - start

    # attacks: training images for the zoo (Tables 1-2), test images for the split models (Table 4)
    start = time.perf_counter()
    attacked_train = _subset(splits.train, settings.n_attack, _generator(settings, 2))
    attacked_test = _subset(splits.test, settings.n_attack_test, _generator(settings, 3))
    results = {name: _attack(name, zoo[name], attacked_train, settings, cache) for name in bar(settings.zoo, "attack zoo")}
    split_results = {key: _attack(key, split_models[key], attacked_test, settings, cache) for key in bar(split_models, "attack P1/P2")}
    targeted = {
        name: _attack(f"{name}-random-target", zoo[name], attacked_train, settings, cache, targets="random")
        for name in bar(settings.zoo if settings.random_targets else (), "attack zoo, random targets")
    }
    seconds["attack"] = time.perf_counter() - start

    labels = {row.key: row.label for row in rows + split_rows}
    distortions, seconds["distortion"] = cache.stage(
        "table1-distortion",
        lambda: [_minimal_distortion(name, zoo[name], results[name], targeted.get(name)) for name in settings.zoo],
        lambda v: [asdict(d) for d in v],
        lambda d: [MinimalDistortion(**x) for x in d],
    )

    def table2() -> TransferTable:
        x, y = attacked_train.images, attacked_train.labels
        sets = {"clean images (all attacked)": (x, x, y), **_transfer_sets(results, labels)}
        for i, stddev in enumerate(settings.noise_stddevs):
            sets[f"Gaussian noise, stddev {stddev:g}"] = (x, gaussian_noise(x, stddev, _generator(settings, 10 + i)), y)
        return _table(sets, {labels[k]: m for k, m in zoo.items()})

    transfer, seconds["table2"] = cache.stage("table2-transfer", table2, asdict, lambda d: TransferTable(**d))

    def table4() -> TransferTable:
        x, y = attacked_test.images, attacked_test.labels
        found = _transfer_sets(split_results, labels)
        sets = {"clean images (all attacked)": (x, x, y)}
        for row, (clean, adversarial, truth) in found.items():
            sets[row] = (clean, adversarial, truth)
            norms = torch.full((len(truth),), settings.magnify_to * math.sqrt(x[0].numel()), dtype=torch.float64)
            sets[f"{row}, magnified to {settings.magnify_to:g}"] = (clean, perturb_to_norm(clean, adversarial - clean, norms), truth)
        pooled = torch.cat([distortion(clean, adv) for clean, adv, _ in found.values()])
        sizes = [float(pooled.mean()) if pooled.numel() else settings.magnify_to, settings.magnify_to]
        for i, size in enumerate(sizes):
            norms = torch.full((len(y),), size * math.sqrt(x[0].numel()), dtype=torch.float64)
            sets[f"Gaussian noise, distortion {size:.3f}"] = (x, equal_norm_noise(x, norms, "gaussian", _generator(settings, 20 + i)), y)
        return _table(sets, {labels[k]: m for k, m in split_models.items()})

    split_transfer, seconds["table4"] = cache.stage("table4-transfer", table4, asdict, lambda d: TransferTable(**d))

    def noise() -> list[NoiseComparison]:
        out = []
        for i, name in enumerate(settings.zoo):
            result, model = results[name], zoo[name]
            ok = _adversarial(result)
            x, y, norms = result.x[ok], result.labels[ok], result.l2[ok].double()
            noisy = {kind: equal_norm_noise(x, norms, kind, _generator(settings, 30 + 2 * i + j)) for j, kind in enumerate(("gaussian", "uniform"))}
            out.append(NoiseComparison(
                key=name, n=len(y), mean_distortion=float(result.distortion[ok].double().mean()) if len(y) else float("nan"),
                adversarial_error=error_rate_on(model, result.x_adv[ok], y),
                gaussian_error=error_rate_on(model, noisy["gaussian"], y),
                uniform_error=error_rate_on(model, noisy["uniform"], y),
            ))
        return out

    noise_rows, seconds["noise"] = cache.stage("noise-equal-size", noise, lambda v: [asdict(n) for n in v], lambda d: [NoiseComparison(**x) for x in d])

    def lipschitz() -> list[LipschitzBounds]:
        out = []
        for name in settings.zoo:
            result, model = results[name], zoo[name]
            bounds = layer_bounds(model, attacked_train.images[:2])
            ok = _adversarial(result)
            ratios = observed_ratio(model, result.x[ok], result.x_adv[ok])
            ratios = ratios[~ratios.isnan()]
            out.append(LipschitzBounds(
                key=name, layers=bounds, network_bound=network_bound(bounds),
                max_observed_ratio=float(ratios.max()) if ratios.numel() else float("nan"),
                mean_observed_ratio=float(ratios.mean()) if ratios.numel() else float("nan"), n=int(ratios.numel()),
            ))
        return out

    lipschitz_rows, seconds["lipschitz"] = cache.stage("lipschitz", lipschitz, lambda v: [asdict(b) for b in v], lambda d: [LipschitzBounds.from_dict(x) for x in d])

    units_model = zoo[settings.units_model]
    layers = dict(units_model.named_modules())
    if settings.units_layer not in layers:
        raise InputError(f"{settings.units_model} has no layer {settings.units_layer!r}; its layers: {', '.join(n for n in layers if n)}")

    def units() -> UnitsVsDirections:
        activations = layer_activations(units_model, layers[settings.units_layer], splits.test.images)
        return units_vs_directions(
            activations, splits.test.labels, layer=f"{settings.units_model}.{settings.units_layer}", n_units=settings.n_units,
            n_random=settings.n_random, k=settings.top_k, generator=_generator(settings, 40),
        )

    unit_result, seconds["units"] = cache.stage("units-vs-directions", units, asdict, lambda d: UnitsVsDirections(**d))

    write_json_atomic(cache.root / "settings.json", {"settings": settings.to_dict(), "data": splits.source})
    return SzegedyResult(
        settings=settings.to_dict(),
        data_source=splits.source,
        n_train=len(splits.train),
        n_test=len(splits.test),
        models=rows,
        distortion=distortions,
        transfer=transfer,
        split_models=split_rows,
        split_transfer=split_transfer,
        noise=noise_rows,
        lipschitz=lipschitz_rows,
        units=unit_result,
        seconds=seconds,
        compute_seconds={
            "train": sum(row.train_seconds for row in rows + split_rows),
            "attack": sum(r.seconds for r in (*results.values(), *split_results.values(), *targeted.values())),
        },
        cache_dir=str(cache.root),
        examples=_figure_examples(results, settings.figure_examples),
        unit_images=splits.test.images[torch.tensor(unit_result.unit_top + unit_result.random_top)],
    )


def _figure_examples(
    results: dict[str, AttackResult], n: int
) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per model: (x, x_adv, label, adversarial prediction) of n real adversarial examples, the
    same attacked images for every model when n of them fool them all."""
    masks = {name: _adversarial(result) for name, result in results.items()}
    common = torch.stack(list(masks.values())).all(0).nonzero().flatten()
    out = {}
    for name, result in results.items():
        index = common[:n] if len(common) >= n else masks[name].nonzero().flatten()[:n]
        out[name] = (result.x[index], result.x_adv[index], result.labels[index], result.adv_pred[index])
    return out
