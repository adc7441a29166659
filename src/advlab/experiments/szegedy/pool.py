"""Sec. 4.2: does training with a pool of adversarial examples lower the clean test error?

The paper: FC100-100-10 with weight decay (no dropout) reached under 1.2% test error with "a pool
of adversarial examples a random subset of which is continuously replaced", against 1.6% with
weight decay alone, and it "only got improvements by generating adversarial examples for each
layer outputs which were used to train all the layers above". So three arms, for each seed, the
same model, data, epochs and seed: no pool, a pool of input examples only, one pool per layer
(`LayerPool`). Each pool arm against the no-pool arm, paired by seed, gives the verdict on the
claimed relative change (-25%) by `advlab.experiments.verdict`; "setup differs" lists what this
run does otherwise than the paper (`run_setup` against `paper.POOL_SETUP`).

Every training is checkpointed each epoch and its result cached as JSON, so a killed study resumes.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from torch import nn

from advlab.data import Dataset
from advlab.experiments.cache import StageCache
from advlab.experiments.szegedy import paper
from advlab.experiments.szegedy.settings import ARMS, PoolComparison, PoolRun, PoolStudy, PoolStudySettings, display_name
from advlab.experiments.verdict import claim_verdict, setup_differences, verdict_text
from advlab.models.registry import build_model
from advlab.progress import progress_bar
from advlab.training import TrainConfig, default_config, error_rate, train_registered
from advlab.training.objectives import INPUT, LayerPool, sigmoid_layers

PER_LAYER = "every layer's outputs (a pool per layer), each training the layers above it"


def arm_layers(arm: str, model: nn.Module) -> tuple[str, ...]:
    """The layers whose outputs the arm's pools hold: none, the input, or the input and every sigmoid layer."""
    return {"no pool": (), "input pool": (INPUT,), "per-layer pool": sigmoid_layers(model)}[arm]


def arm_config(study: PoolStudySettings, seed: int, max_epochs: int | None) -> TrainConfig:
    """The model's registered training (the paper's weight decays; its learning-rate schedule, then spanning
    the study's epochs), with the study's epochs, capped by max_epochs."""
    epochs = study.epochs or default_config(study.model).epochs
    return default_config(study.model, seed=seed, epochs=min(epochs, max_epochs) if max_epochs else epochs)


def _objective(arm: str, study: PoolStudySettings, train: Dataset, config: TrainConfig) -> LayerPool | None:
    layers = arm_layers(arm, build_model(study.model))
    if not layers:
        return None
    return LayerPool(train, batch_size=config.batch_size, layers=layers, pool_size=study.pool_size, refresh_every=study.refresh_every,
                     refresh_fraction=study.refresh_fraction, fraction=study.fraction, attack=dict(study.attack), seed=config.seed)


def train_arm(arm: str, seed: int, study: PoolStudySettings, max_epochs: int | None, train: Dataset, test: Dataset,
              cache: StageCache, progress: bool) -> tuple[PoolRun, bool]:
    """One training of the study, resumably (checkpointed each epoch); its result cached as JSON.
    Returns the run and whether it was trained now (False: read from the cache)."""
    key = f"{arm.replace(' ', '-')}-seed{seed}"
    cached = cache.read_json("runs", f"{key}.json")
    if cached is not None:
        return PoolRun(**cached), False
    config = arm_config(study, seed, max_epochs)
    objective = _objective(arm, study, train, config)
    trained = train_registered(study.model, train, config, objective=objective, checkpoint=cache.path("checkpoints", f"{key}.safetensors"),
                               resume=True, progress=progress, run={"data": {"train": train.fingerprint()}})
    run = PoolRun(
        arm=arm, seed=seed, layers=list(objective.layers) if objective else [], epochs=config.epochs, n_train=len(train),
        train_error=error_rate(trained.model, train), test_error=error_rate(trained.model, test), seconds=trained.seconds,
        attacked=dict(objective.attacked) if objective else {}, reached=dict(objective.reached) if objective else {},
        objective=objective.to_dict() if objective else {"name": "cross_entropy"},
    )
    cache.write_json(asdict(run), "runs", f"{key}.json")
    return run, True


def _regularisation(config: TrainConfig, model: nn.Module) -> str:
    decays = config.weight_decay if isinstance(config.weight_decay, tuple) else (config.weight_decay,)
    dropout = any(isinstance(m, nn.Dropout) for m in model.modules())
    return f"{'weight decay' if any(decays) else 'no weight decay'}, {'dropout' if dropout else 'no dropout'}"


def _rate(config: TrainConfig) -> str:
    return f"lr {config.lr:g}" + (" cosine-decayed to 0 over the epochs" if config.lr_schedule == "cosine" else "")


def run_setup(arm: str, study: PoolStudySettings, config: TrainConfig, n_train: int) -> dict[str, Any]:
    """This run's setup for `arm`, under the keys of `paper.POOL_SETUP`."""
    model = build_model(study.model)
    layers = arm_layers(arm, model)
    held = PER_LAYER if layers == sigmoid_layers(model) else "the input only" if layers == (INPUT,) else "no pool"
    replaced = max(1, round(study.refresh_fraction * (study.pool_size // max(1, len(layers)))))
    return {
        "network": display_name(study.model),
        "regularisation": _regularisation(config, model),
        "training images": n_train,
        "pool examples for": held,
        "pool refresh": LayerPool.REFRESH if layers else "no pool",
        "pool schedule": (f"every pool built at the first update; then {replaced} random slots of each ({study.refresh_fraction:.0%}) "
                          f"replaced every {study.refresh_every} updates, across epochs"),
        "training length": f"{config.epochs} fixed epochs ({config.optimizer}, {_rate(config)}, batch {config.batch_size}), last-epoch weights",
    }


def compare(runs: list[PoolRun], study: PoolStudySettings, max_epochs: int | None, n_train: int) -> list[PoolComparison]:
    """Each pool arm against the no-pool arm, paired by seed (seeds with both runs)."""
    by = {(r.arm, r.seed): r.test_error for r in runs}
    out = []
    for arm in ARMS[1:]:
        seeds = [s for s in study.seeds if ("no pool", s) in by and (arm, s) in by]
        baseline, pooled = [by["no pool", s] for s in seeds], [by[arm, s] for s in seeds]
        relative = [p / b - 1 for b, p in zip(baseline, pooled)] if min(baseline, default=0) > 0 else []
        found = claim_verdict(relative, paper.POOL_RELATIVE)
        setup = run_setup(arm, study, arm_config(study, study.seeds[0], max_epochs), n_train)
        differences = setup_differences(setup, paper.POOL_SETUP)
        out.append(PoolComparison(arm, seeds, baseline, pooled, relative, found.mean, found.lower, found.upper, found.p_value,
                                  verdict_text(found, []), verdict_text(found, differences), setup, differences))
    return out


def pool_study(train: Dataset, test: Dataset, study: PoolStudySettings, max_epochs: int | None, cache: StageCache, *,
               progress: bool = False) -> tuple[PoolStudy, float]:
    """Run (or resume) every training of the study, seed by seed (a partial study holds whole triples), and compare.
    Returns the study and the seconds spent training now (0.0 when every run was read from the cache)."""
    bar = progress_bar(len(study.seeds) * len(ARMS), "Sec. 4.2 trainings", enabled=progress, unit="training")
    runs, seconds = [], 0.0
    for seed in study.seeds:
        for arm in ARMS:
            start = time.perf_counter()
            run, fresh = train_arm(arm, seed, study, max_epochs, train, test, cache, progress)
            runs.append(run)
            seconds += (time.perf_counter() - start) if fresh else 0.0
            bar.update()
    bar.close()
    comparisons = compare(runs, study, max_epochs, len(train))
    verdicts = {c.arm: c.verdict for c in comparisons}
    found = PoolStudy(study.to_dict(), runs, comparisons, paper.POOL_RELATIVE, verdicts["per-layer pool"] != verdicts["input pool"])
    return found, seconds
