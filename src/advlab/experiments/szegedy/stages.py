"""The stages of the Szegedy reproduction, each a module-level function of its inputs.

Models and attacks are cached as files (`StageCache`); the tables are pure functions of the
trained models and the attack results, cached as JSON by the caller.
"""

from __future__ import annotations

import contextlib
import json
import math
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from advlab.analysis.lipschitz import layer_bounds, network_bound, observed_ratio
from advlab.analysis.noise import equal_norm_noise, gaussian_noise, perturb_to_norm
from advlab.analysis.transfer import distortion, error_rate_on
from advlab.attacks import AttackResult, make_attack
from advlab.data import Dataset
from advlab.errors import DataError, InputError, SolverError
from advlab.exact import minimal_perturbation
from advlab.experiments.cache import StageCache
from advlab.experiments.szegedy.settings import (
    LipschitzBounds,
    MinimalDistortion,
    ModelEval,
    NoiseComparison,
    SzegedySettings,
    TransferTable,
    display_name,
)
from advlab.models import SoftmaxRegression
from advlab.models.registry import get_spec
from advlab.training import TrainConfig, default_config, error_rate, load_checkpoint, read_metadata, save_checkpoint, train_registered


def generator(settings: SzegedySettings, stream: int) -> torch.Generator:
    """An independent seeded stream per use (stream numbers are fixed, so results do not shift)."""
    return torch.Generator().manual_seed(settings.seed * 1009 + stream)


def halves(train: Dataset, settings: SzegedySettings) -> dict[str, Dataset]:
    """The disjoint random halves P1, P2 of the training set (Tables 3-4)."""
    order = torch.randperm(len(train), generator=generator(settings, 1))
    half = len(train) // 2
    return {
        part: Dataset(train.images[index], train.labels[index], f"{train.name}:{part}")
        for part, index in (("P1", order[:half]), ("P2", order[half:]))
    }


def subset(data: Dataset, n: int, gen: torch.Generator) -> Dataset:
    index = torch.randperm(len(data), generator=gen)[:n]
    return Dataset(data.images[index], data.labels[index], f"{data.name}[{min(n, len(data))} drawn]")


def random_targets(labels: torch.Tensor, classes: int, gen: torch.Generator) -> torch.Tensor:
    """One wrong class per image, uniform among the classes - 1 others."""
    return (labels + torch.randint(1, classes, labels.shape, generator=gen)) % classes


def training_config(model_name: str, settings: SzegedySettings, factor: int = 1) -> TrainConfig:
    """The model's registered training with the run's seed: its epochs capped by max_epochs, times `factor`
    (a decaying learning rate then spans all of them)."""
    epochs = default_config(model_name).epochs
    return default_config(model_name, seed=settings.seed, epochs=factor * (min(epochs, settings.max_epochs) if settings.max_epochs else epochs))


def recorded_training(document: dict[str, Any]) -> TrainConfig | None:
    """The training settings a cached model or checkpoint records (TrainConfig's defaults for fields added
    since), None when it records none that parse."""
    try:
        return TrainConfig(**document["training"])
    except (KeyError, TypeError, InputError):
        return None


def registered_architecture(model_name: str) -> dict[str, Any]:
    """The registered architecture keywords of `model_name`, as a checkpoint records them (JSON)."""
    return json.loads(json.dumps(get_spec(model_name).architecture))


def trained_as_now(document: Mapping[str, Any], model_name: str, config: TrainConfig) -> bool:
    """Whether a cached model or checkpoint records the training `config` and today's registered architecture of
    `model_name` (a change to either, e.g. AE400-10 made a sparse autoencoder, means training it again)."""
    return recorded_training(dict(document)) == config and document.get("architecture") == registered_architecture(model_name)


def is_cached(cache: StageCache, key: str, model_name: str, config: TrainConfig) -> bool:
    """Whether the model `key` is in the cache, trained as `model_name` is now with `config` (`train` reads it instead
    of training)."""
    path = cache.path("models", f"{key}.safetensors")
    try:
        return path.is_file() and trained_as_now(read_metadata(path), model_name, config)
    except Exception:  # noqa: BLE001 - unreadable: `train` recomputes it
        return False


def train(key: str, model_name: str, part: str, data: Dataset, test: Dataset, settings: SzegedySettings,
          cache: StageCache, progress: bool, factor: int = 1) -> tuple[nn.Module, ModelEval]:
    """A zoo or split model, trained with `training_config` (factor > 1: factor x the epochs, from the start),
    or read from the cache; a training cut short continues from its last epoch's checkpoint. A cached model or
    checkpoint trained otherwise (the registered training or architecture changed since) is trained again."""
    config = training_config(model_name, settings, factor)
    path = cache.path("models", f"{key}.safetensors")
    partial = cache.path("checkpoints", f"{key}.safetensors")
    meta = None
    if is_cached(cache, key, model_name, config):
        try:
            checkpoint = load_checkpoint(path, expected_model=model_name)
            model, meta = checkpoint.model, checkpoint.metadata
        except Exception as error:  # noqa: BLE001 - any unreadable checkpoint is recomputed
            cache.corrupt(path, error)
    if meta is None:
        if partial.is_file():
            try:
                stale = not trained_as_now(read_metadata(partial), model_name, config)
            except Exception as error:  # noqa: BLE001 - any unreadable checkpoint is recomputed
                cache.corrupt(partial, error)
                stale = False
            if stale:
                partial.unlink()
        # checkpointed every epoch: a killed run resumes inside this training, to the same final weights
        trained = train_registered(model_name, data, config, progress=progress, checkpoint=partial, resume=True,
                                   run={"data": {"train": data.fingerprint()}})
        model = trained.model
        meta = {
            "training": trained.config.to_dict(), "trained_on": part, "n_train": len(data),
            "metrics": {"train_error": error_rate(model, data), "test_error": error_rate(model, test)},
            "train_seconds": trained.seconds,
        }
        save_checkpoint(path, model, model_name=model_name, architecture=trained.architecture, metadata=meta)
    label = _label(model_name, part)
    row = ModelEval(key, label, model_name, part, meta["n_train"], meta["metrics"]["train_error"],
                    meta["metrics"]["test_error"], meta["train_seconds"],
                    json.loads(json.dumps(meta["training"])))  # as read back from a checkpoint (lists, not tuples)
    return model.eval(), row


def _label(model_name: str, part: str) -> str:
    return display_name(model_name, None if part == "train" else part)


def attack(key: str, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, settings: SzegedySettings,
           cache: StageCache, targets: torch.Tensor | None = None) -> AttackResult:
    """The attack's result (untargeted, or towards `targets`), from the cache or run now and cached."""
    path = cache.path("attacks", f"{key}.npz")
    if path.is_file():
        try:
            return AttackResult.load(path, images)
        except (DataError, zipfile.BadZipFile) as error:
            cache.corrupt(path, error)
    result = make_attack(settings.attack, model, seed=settings.seed, **dict(settings.attack_params))(images, labels, targets=targets)
    result.save(path)
    return result


def adversarial(result: AttackResult) -> torch.Tensor:
    """Mask of the attacked images that are real adversarial examples: correct clean, goal reached."""
    return result.clean_correct & result.success


def _mean(values: torch.Tensor) -> float:
    values = values[torch.isfinite(values)].double()
    return float(values.mean()) if values.numel() else float("nan")


def _exact(model: nn.Module, x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """Proven minimal distortions of a linear model (inf where unreachable; nan where the exact
    solver returned no certificate for that example, which the means then leave out)."""
    scale = math.sqrt(x[0].numel())
    try:
        return minimal_perturbation(model, x, y, targets=targets).distance.double() / scale
    except SolverError:  # solve one by one, so that one uncertified example costs only itself
        out = torch.full((len(y),), math.nan, dtype=torch.float64)
        for i in range(len(y)):
            with contextlib.suppress(SolverError):
                one = minimal_perturbation(model, x[i : i + 1], y[i : i + 1], targets=None if targets is None else targets[i : i + 1])
                out[i] = float(one.distance[0]) / scale
        return out


def minimal_distortion(key: str, model: nn.Module, targeted: AttackResult, per_target: list[AttackResult],
                       untargeted: AttackResult | None) -> MinimalDistortion:
    """Table 1's distortion columns (see `MinimalDistortion`)."""
    ok = adversarial(targeted)
    correct = targeted.clean_correct
    n_correct = int(correct.sum())
    linear = isinstance(model, SoftmaxRegression)
    exact_targeted = _mean(_exact(model, targeted.x[ok], targeted.labels[ok], targeted.targets[ok])) if linear and bool(ok.any()) else None
    if linear:
        x, y = targeted.x[correct], targeted.labels[correct]
        classes = targeted.clean_logits.shape[1]
        per_image = torch.stack([_exact(model, x, y, (y + k) % classes) for k in range(1, classes)], 1) if len(y) else torch.empty(0, 1)
        all_targets, all_n, method = _mean(per_image.mean(1)) if len(y) else None, len(y), "exact"
    elif per_target:
        first = per_target[0]
        keep = first.clean_correct
        reached = torch.stack([r.success & keep for r in per_target], 1)
        dist = torch.stack([r.distortion.double() for r in per_target], 1)
        pairs = dist[reached]
        all_targets, all_n, method = (float(pairs.mean()) if pairs.numel() else float("nan")), int(keep.sum()), "attack"
    else:
        all_targets, all_n, method = None, 0, "none"
    untargeted_mean = untargeted_rate = exact_untargeted = None
    if untargeted is not None:
        found = adversarial(untargeted)
        untargeted_mean = _mean(untargeted.distortion[found])
        untargeted_rate = float(found.sum()) / n_correct if n_correct else float("nan")
        if linear and bool(found.any()):
            exact_untargeted = _mean(_exact(model, untargeted.x[found], untargeted.labels[found], None))
    return MinimalDistortion(
        key=key, n_attacked=len(targeted), n_clean_correct=n_correct,
        targeted_success_rate=float(ok.sum()) / n_correct if n_correct else float("nan"),
        targeted_mean=_mean(targeted.distortion[ok]),
        targeted_median=float(targeted.distortion[ok].double().median()) if bool(ok.any()) else float("nan"),
        exact_targeted_mean=exact_targeted, all_targets_mean=all_targets, all_targets_n=all_n, all_targets_method=method,
        untargeted_mean=untargeted_mean, untargeted_success_rate=untargeted_rate, exact_untargeted_mean=exact_untargeted,
        seconds=targeted.seconds + sum(r.seconds for r in per_target) + (untargeted.seconds if untargeted is not None else 0.0),
    )


@dataclass
class Row:
    """One row of a transfer table: perturbed images x_new of the attacked images `index`."""

    index: torch.Tensor
    x: torch.Tensor
    x_new: torch.Tensor
    labels: torch.Tensor
    factor: float = 1.0
    paper_distortion: float | None = None  # rescale to it for `at_paper` (None: noise rows)
    noise: bool = False


def adversarial_row(result: AttackResult, paper_distortion: float | None) -> Row:
    ok = adversarial(result)
    return Row(ok.nonzero().flatten(), result.x[ok], result.x_adv[ok], result.labels[ok], 1.0, paper_distortion)


def row_distortion(row: Row) -> float:
    """The row's mean distortion (1.0 for an empty row, so that a factor stays finite)."""
    return float(distortion(row.x, row.x_new).mean()) if len(row.labels) else 1.0


def magnified(row: Row, factor: float, paper_distortion: float | None) -> Row:
    """The row's perturbations scaled by `factor` along r, inside the box."""
    r = row.x_new - row.x
    norms = factor * r.flatten(1).double().norm(dim=1)
    return Row(row.index, row.x, perturb_to_norm(row.x, r, norms), row.labels, factor, paper_distortion)


CLIPPED = ", clipped to [0, 1]"


def noise_rows(x: torch.Tensor, labels: torch.Tensor, stddevs: tuple[float, ...], settings: SzegedySettings,
               stream: int) -> dict[str, Row]:
    """Per stddev: the paper's row, x + N(0, stddev^2) unclipped (its distortion is the stddev), and the
    same draw clipped to [0, 1] as a labelled extra row (a valid image, smaller distortion)."""
    rows = {}
    for i, stddev in enumerate(stddevs):
        unclipped = gaussian_noise(x, stddev, generator(settings, stream + i))
        name = f"Gaussian noise, stddev {stddev:g}"
        rows[name] = Row(torch.arange(len(labels)), x, unclipped, labels, 1.0, None, noise=True)
        rows[name + CLIPPED] = Row(torch.arange(len(labels)), x, unclipped.clamp(0.0, 1.0), labels, 1.0, None, noise=True)
    return rows


def transfer(rows: Mapping[str, Row], models: Mapping[str, nn.Module], gen: torch.Generator) -> TransferTable:
    """Every model on every row, with the row's baselines on exactly its images (see `TransferTable`)."""
    columns = list(models)

    def errors(images: torch.Tensor, labels: torch.Tensor) -> list[float]:
        return [error_rate_on(models[c], images, labels) for c in columns]

    table = TransferTable(rows=list(rows), columns=columns, error=[], mean_distortion=[], n=[], index=[], clean_error=[],
                          noise_error=[], factor=[], at_paper=[])
    for row in rows.values():
        found = distortion(row.x, row.x_new)
        table.error.append(errors(row.x_new, row.labels))
        table.mean_distortion.append(float(found.mean()) if len(row.labels) else float("nan"))
        table.n.append(len(row.labels))
        table.index.append(row.index.tolist())
        table.clean_error.append(errors(row.x, row.labels))
        table.factor.append(row.factor)
        norms = (row.x_new - row.x).flatten(1).double().norm(dim=1)
        table.noise_error.append(None if row.noise else errors(equal_norm_noise(row.x, norms, "gaussian", gen), row.labels))
        if row.paper_distortion is None or not len(row.labels) or not float(found.mean()) > 0:
            table.at_paper.append(None)
        else:
            rescaled = magnified(row, row.paper_distortion / float(found.mean()), None)
            table.at_paper.append(errors(rescaled.x_new, row.labels))
    return table


def fed_rows(rows: Mapping[str, Row], model: nn.Module) -> tuple[list[float], list[float]]:
    """The model's error on each row's perturbed images and on the same images unperturbed."""
    return ([error_rate_on(model, row.x_new, row.labels) for row in rows.values()],
            [error_rate_on(model, row.x, row.labels) for row in rows.values()])


def noise_comparison(key: str, model: nn.Module, result: AttackResult, gen: torch.Generator) -> NoiseComparison:
    ok = adversarial(result)
    x, y, norms = result.x[ok], result.labels[ok], result.l2[ok].double()
    return NoiseComparison(
        key=key, n=len(y), mean_distortion=_mean(result.distortion[ok]),
        adversarial_error=error_rate_on(model, result.x_adv[ok], y),
        gaussian_error=error_rate_on(model, equal_norm_noise(x, norms, "gaussian", gen), y),
        uniform_error=error_rate_on(model, equal_norm_noise(x, norms, "uniform", gen), y),
    )


def lipschitz(key: str, model: nn.Module, result: AttackResult, probe: torch.Tensor) -> LipschitzBounds:
    bounds = layer_bounds(model, probe)
    ok = adversarial(result)
    ratios = observed_ratio(model, result.x[ok], result.x_adv[ok])
    ratios = ratios[~ratios.isnan()]
    return LipschitzBounds(
        key=key, layers=bounds, network_bound=network_bound(bounds),
        max_observed_ratio=float(ratios.max()) if ratios.numel() else float("nan"),
        mean_observed_ratio=float(ratios.mean()) if ratios.numel() else float("nan"), n=int(ratios.numel()),
    )


def figure_examples(results: Mapping[str, AttackResult], n: int) -> dict[str, tuple[torch.Tensor, ...]]:
    """Per model: (x, x_adv, label, adversarial prediction) of n real adversarial examples, the
    same attacked images for every model when n of them fool them all."""
    masks = {name: adversarial(result) for name, result in results.items()}
    common = torch.stack(list(masks.values())).all(0).nonzero().flatten()
    out = {}
    for name, result in results.items():
        index = common[:n] if len(common) >= n else masks[name].nonzero().flatten()[:n]
        out[name] = (result.x[index], result.x_adv[index], result.labels[index], result.adv_pred[index])
    return out
