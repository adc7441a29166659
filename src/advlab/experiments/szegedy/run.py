"""`szegedy(splits, settings, work_dir=...)`: run (or resume) every stage of the reproduction.

Everything is cached under `work_dir/cache/<fingerprint of the settings and data>/`: trained
models, attacks, and each table as JSON, so an interrupted run resumes where it stopped and
a corrupt entry is recomputed with a warning. Nothing here prints.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from advlab.analysis.units import UnitsVsDirections, layer_activations, units_vs_directions
from advlab.attacks import AttackResult
from advlab.data import Splits
from advlab.errors import InputError
from advlab.models import SoftmaxRegression
from advlab.experiments.cache import StageCache
from advlab.experiments.szegedy import paper, stages
from advlab.experiments.szegedy.pool import pool_study
from advlab.experiments.szegedy.settings import (
    LipschitzBounds,
    LongerTraining,
    MinimalDistortion,
    ModelEval,
    NoiseComparison,
    PoolStudy,
    SzegedyResult,
    SzegedySettings,
    TransferTable,
)
from advlab.progress import progress_bar
from advlab.training import default_config
from advlab.training.objectives import LayerPool


def fingerprint(settings: SzegedySettings | dict, splits: Splits) -> str:
    """A digest of the settings (or the part of them a stage depends on) and the data."""
    chosen = settings.to_dict() if isinstance(settings, SzegedySettings) else settings
    digest = hashlib.sha256(json.dumps(chosen, sort_keys=True).encode())
    for split in (splits.train, splits.test):
        digest.update(split.labels.numpy().tobytes())
        digest.update(np.float64(split.images.double().sum()).tobytes())
    return digest.hexdigest()[:16]


def szegedy(splits: Splits, settings: SzegedySettings | None = None, *, work_dir: str | Path, progress: bool = False) -> SzegedyResult:
    """Run (or resume) every experiment; see `advlab.experiments.szegedy`."""
    settings = settings or SzegedySettings()
    # the tables' stages do not depend on the Sec. 4.2 study, which has its own folder; they depend on how each model trained
    tables = {k: v for k, v in settings.to_dict().items() if k not in ("pool_study", "longer")}
    names = {*settings.zoo, *(n for n, _ in settings.split)}
    tables["training"] = {name: asdict(stages.training_config(name, settings)) for name in names}
    tables["architecture"] = {name: stages.registered_architecture(name) for name in names}
    cache = StageCache(Path(work_dir) / "cache" / fingerprint(tables, splits))
    # trained models depend only on these settings (and each on its training, checked per model: `stages.train`),
    # so runs that differ in the attacks share them
    training = {k: settings.to_dict()[k] for k in ("zoo", "split", "max_epochs", "seed")} | {"architecture": tables["architecture"]}
    models = StageCache(Path(work_dir) / "cache" / f"models-{fingerprint(training, splits)}")
    seconds: dict[str, float] = {}

    def bar(items, desc):  # type: ignore[no-untyped-def]
        return progress_bar(None, desc, enabled=progress, unit="item", iterable=items)

    # Sec. 4.2 first: its trainings are independent of the tables
    study: PoolStudy | None = None
    if settings.pool_study is not None:
        chosen = {"pool_study": settings.pool_study.to_dict(), "max_epochs": settings.max_epochs,
                  "training": default_config(settings.pool_study.model).to_dict(), "refresh": LayerPool.REFRESH}
        pools = StageCache(Path(work_dir) / "cache" / f"pool-{fingerprint(chosen, splits)}")
        study, seconds["sec4.2 pool"] = pool_study(splits.train, splits.test, settings.pool_study, settings.max_epochs, pools, progress=progress)

    start = time.perf_counter()
    zoo: dict[str, nn.Module] = {}
    rows: list[ModelEval] = []
    for name in bar(settings.zoo, "train zoo"):
        zoo[name], row = stages.train(name, name, "train", splits.train, splits.test, settings, models, progress)
        rows.append(row)
    parts = stages.halves(splits.train, settings)
    split_models: dict[str, nn.Module] = {}
    split_rows: list[ModelEval] = []
    for name, part in bar(settings.split, "train P1/P2"):
        key = f"{name}@{part}"
        split_models[key], row = stages.train(key, name, part, parts[part], splits.test, settings, models, progress)
        split_rows.append(row)
    seconds["train"] = time.perf_counter() - start

    start = time.perf_counter()
    classes = int(splits.train.labels.max()) + 1
    attacked = stages.subset(splits.train, settings.n_attack, stages.generator(settings, 2))
    attacked_test = stages.subset(splits.test, settings.n_attack_test, stages.generator(settings, 3))
    targets = stages.random_targets(attacked.labels, classes, stages.generator(settings, 4))
    test_targets = stages.random_targets(attacked_test.labels, classes, stages.generator(settings, 5))
    x, y = attacked.images, attacked.labels
    results = {name: stages.attack(f"{name}-target", zoo[name], x, y, settings, cache, targets) for name in bar(settings.zoo, "attack zoo")}
    split_results = {
        key: stages.attack(f"{key}-target", split_models[key], attacked_test.images, attacked_test.labels, settings, cache, test_targets)
        for key in bar(split_models, "attack P1/P2")
    }
    untargeted = {
        name: stages.attack(name, zoo[name], x, y, settings, cache)
        for name in bar(settings.zoo if settings.untargeted else (), "attack zoo, untargeted")
    }
    few_x, few_y = x[: settings.n_all_targets], y[: settings.n_all_targets]
    per_target: dict[str, list[AttackResult]] = {
        name: [stages.attack(f"{name}-target+{k}", zoo[name], few_x, few_y, settings, cache, (few_y + k) % classes) for k in range(1, classes)]
        for name in bar(settings.zoo if settings.n_all_targets else (), "attack zoo, every target")
        if not isinstance(zoo[name], SoftmaxRegression)  # exact for linear models
    }
    seconds["attack"] = time.perf_counter() - start

    labels = {row.key: row.label for row in rows + split_rows}
    distortions, seconds["distortion"] = cache.json_stage(
        "table1-distortion",
        lambda: [stages.minimal_distortion(n, zoo[n], results[n], per_target.get(n, []), untargeted.get(n)) for n in settings.zoo],
        lambda v: [asdict(d) for d in v],
        lambda d: [MinimalDistortion(**e) for e in d],
    )

    def table2_rows() -> dict[str, stages.Row]:
        table_rows = {labels[n]: stages.adversarial_row(results[n], paper.TABLE2_DISTORTION.get(labels[n])) for n in settings.zoo}
        table_rows.update(stages.noise_rows(x, y, settings.noise_stddevs, settings, 10))
        return table_rows

    def table2() -> TransferTable:
        return stages.transfer(table2_rows(), {labels[k]: m for k, m in zoo.items()}, stages.generator(settings, 15))

    transfer, seconds["table2"] = cache.json_stage("table2-transfer", table2, asdict, lambda d: TransferTable(**d))

    longer: list[LongerTraining] = []
    seconds["longer"] = 0.0
    for name, factor in bar([(n, f) for n, f in settings.longer if n in zoo], "train longer"):
        key = f"{name}-x{factor}"
        start, fresh = time.perf_counter(), not stages.is_cached(models, key, name, stages.training_config(name, settings, factor))
        model, row = stages.train(key, name, "train", splits.train, splits.test, settings, models, progress, factor=factor)
        seconds["longer"] += (time.perf_counter() - start) if fresh else 0.0

        def fed(model: nn.Module = model, name: str = name, factor: int = factor, row: ModelEval = row) -> LongerTraining:
            table_rows = table2_rows()
            error, clean = stages.fed_rows(table_rows, model)
            return LongerTraining(name, factor, row, list(table_rows), error, clean)

        entry, spent = cache.json_stage(f"table2-{key}", fed, asdict, lambda d: LongerTraining(**{**d, "model": ModelEval(**d["model"])}))
        seconds["longer"] += spent
        longer.append(entry)

    def table4() -> TransferTable:
        found = {labels[k]: stages.adversarial_row(r, paper.TABLE4_DISTORTION.get(labels[k])) for k, r in split_results.items()}
        table_rows = dict(found)
        for label, row in found.items():  # the paper's factor where it has one, else to distortion 0.1
            base = paper.TABLE4_DISTORTION.get(label) or stages.row_distortion(row)
            table_rows[f"{label}, magnified"] = stages.magnified(row, paper.MAGNIFIED_DISTORTION / base, paper.MAGNIFIED_DISTORTION)
        table_rows.update(stages.noise_rows(attacked_test.images, attacked_test.labels, settings.split_noise_stddevs, settings, 20))
        return stages.transfer(table_rows, {labels[k]: m for k, m in split_models.items()}, stages.generator(settings, 25))

    split_transfer, seconds["table4"] = cache.json_stage("table4-transfer", table4, asdict, lambda d: TransferTable(**d))

    noise_rows, seconds["noise"] = cache.json_stage(
        "noise-equal-size",
        lambda: [stages.noise_comparison(n, zoo[n], results[n], stages.generator(settings, 30 + i)) for i, n in enumerate(settings.zoo)],
        lambda v: [asdict(n) for n in v],
        lambda d: [NoiseComparison(**e) for e in d],
    )
    lipschitz_rows, seconds["lipschitz"] = cache.json_stage(
        "lipschitz",
        lambda: [stages.lipschitz(n, zoo[n], results[n], x[:2]) for n in settings.zoo],
        lambda v: [asdict(b) for b in v],
        lambda d: [LipschitzBounds.from_dict(e) for e in d],
    )

    units_model = zoo[settings.units_model]
    layers = dict(units_model.named_modules())
    if settings.units_layer not in layers:
        raise InputError(f"{settings.units_model} has no layer {settings.units_layer!r}; its layers: {', '.join(n for n in layers if n)}")

    def units() -> UnitsVsDirections:
        activations = layer_activations(units_model, layers[settings.units_layer], splits.test.images)
        return units_vs_directions(
            activations, splits.test.labels, layer=f"{settings.units_model}.{settings.units_layer}", n_units=settings.n_units,
            n_random=settings.n_random, k=settings.top_k, generator=stages.generator(settings, 40),
        )

    unit_result, seconds["units"] = cache.json_stage("units-vs-directions", units, asdict, lambda d: UnitsVsDirections(**d))

    cache.write_json({"settings": settings.to_dict(), "data": splits.source}, "settings.json")
    all_attacks = [*results.values(), *split_results.values(), *untargeted.values(), *(r for rs in per_target.values() for r in rs)]
    return SzegedyResult(
        settings=settings.to_dict(), data_source=splits.source, n_train=len(splits.train), n_test=len(splits.test),
        models=rows, distortion=distortions, transfer=transfer, split_models=split_rows, split_transfer=split_transfer,
        noise=noise_rows, lipschitz=lipschitz_rows, units=unit_result, seconds=seconds,
        compute_seconds={"train": sum(r.train_seconds for r in rows + split_rows), "attack": sum(r.seconds for r in all_attacks),
                         **({"sec4.2 pool": sum(r.seconds for r in study.runs)} if study else {})},
        cache_dir=str(cache.root), pool_study=study, longer=longer,
        examples=stages.figure_examples(results, settings.figure_examples),
        unit_images=splits.test.images[torch.tensor(unit_result.unit_top + unit_result.random_top)],
    )
