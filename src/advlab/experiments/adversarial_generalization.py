"""Does training on adversarial examples improve clean generalization? Both papers say so:

- Szegedy et al. 2013, Sec. 4.2: FC100-100-10 trained with a pool of adversarial examples
  reached under 1.2% test error, against 1.6% with weight decay alone (`AdversarialPool`).
- Goodfellow et al. 2014, Sec. 6: the maxout network's test error went from 0.94% to 0.84%
  with FGSM adversarial training (`AdversarialObjective`).

Here each (dataset, model) is trained with and without its adversarial objective, with the
same epochs, the same data and the same model selection (the weights after the last epoch),
for several seeds; the paired relative changes of clean test error give the verdict by the rule
of `advlab.experiments.verdict` (reproduced / not reproduced / inconclusive, symmetric in "no
effect" and "the paper's effect"), with "setup differs" and the list of differences wherever the
run's setup (`run_setup`) is not the paper's (`PAPER_SETUP`).

Every run is checkpointed each epoch and its result cached as JSON, so a killed study resumes.
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


from advlab.data import Dataset, load_mnist
from advlab.data.catalog import stream_data
from advlab.data.stream import stream_length
from advlab.errors import InputError
from advlab.experiments.cache import StageCache
from advlab.experiments.verdict import claim_verdict, setup_differences, verdict_text
from advlab.progress import progress_bar
from advlab.training import AdversarialObjective, default_config, error_rate, train_registered
from advlab.training.objectives import AdversarialPool

# (model, adversarial method, the paper's clean test error without, with adversarial training)
CLAIMS: dict[str, tuple[str, str, float, float]] = {
    "fc100-100-10": ("szegedy-pool", "Szegedy et al. 2013, Sec. 4.2", 0.016, 0.012),
    "maxout": ("fgsm", "Goodfellow et al. 2014, Sec. 6", 0.0094, 0.0084),
}

PAPER_TRAIN_IMAGES = 60_000
# what each paper states about the setup behind its claim, as the keys `run_setup` computes
PAPER_SETUP: dict[str, dict[str, Any]] = {
    "fc100-100-10": {
        "data": "mnist", "training images": PAPER_TRAIN_IMAGES, "model selection": "trained to convergence",
        "pool examples for": "every layer's outputs (higher layers more useful than the input)",
        "pool refresh": "continuous: a random subset replaced",
    },
    "maxout": {
        "data": "mnist", "training images": PAPER_TRAIN_IMAGES,  # the original 240 x 5 maxout (its 1600-unit model is another claim)
        "model selection": "early stopping on adversarial validation error, then retraining on all 60,000",
    },
}


@dataclass(frozen=True)
class DataSpec:
    name: str
    data_dir: str | None  # an MNIST-format IDX folder (None: the embedded default)
    train_limit: int | None  # the first N training images (None: all)
    epochs: int | None  # None: each model's registered number of epochs


@dataclass(frozen=True)
class GeneralizationSettings:
    datasets: tuple[DataSpec, ...]
    models: tuple[str, ...] = ("fc100-100-10", "maxout")
    seeds: tuple[int, ...] = (0, 1, 2)
    pool_size: int = 100
    pool_every: int = 100  # updates between pools (counted from each epoch's start)
    pool_fraction: float = 0.5
    pool_attack: tuple[tuple[str, Any], ...] = (("temperature", 1.0), ("search_steps", 8), ("max_iter", 40))
    fgsm_eps: float = 0.25
    fgsm_alpha: float = 0.5

    def __post_init__(self) -> None:
        if len(self.seeds) < 2:
            raise InputError(f"a paired comparison needs at least 2 seeds, got {len(self.seeds)}")
        unknown = set(self.models) - set(CLAIMS)
        if unknown:
            raise InputError(f"no adversarial-training claim for {sorted(unknown)}; known: {sorted(CLAIMS)}")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps({**asdict(self), "pool_attack": dict(self.pool_attack)}))


@dataclass
class RunResult:
    dataset: str
    model: str
    training: str  # "standard" or the adversarial method
    seed: int
    epochs: int
    n_train: int
    train_error: float
    test_error: float
    seconds: float
    objective: dict[str, Any]
    pool_kept: list[int] = field(default_factory=list)  # examples kept per pool (szegedy-pool only)
    device: str = "cpu"  # where it was trained (the record; results differ across devices only by rounding)


@dataclass
class Comparison:
    dataset: str
    model: str
    method: str
    source: str
    paper_standard: float
    paper_adversarial: float
    seeds: list[int]
    standard: list[float]
    adversarial: list[float]
    mean_difference: float  # adversarial - standard, paired by seed
    p_value: float | None  # one-sided paired t-test of "adversarial < standard"
    relative_upper: float | None  # 95% upper bound of mean (adversarial - standard) / standard
    verdict: str
    relative_lower: float | None = None  # 95% lower bound of the same
    setup_differences: list[str] = field(default_factory=list)  # this run's setup against the paper's (empty: the same)

    @property
    def paper_relative(self) -> float:
        return self.paper_adversarial / self.paper_standard - 1


def run_setup(spec: DataSpec, model: str, runs: list[RunResult], settings: GeneralizationSettings) -> dict[str, Any]:
    """This study's setup for (spec, model), under the keys of PAPER_SETUP."""
    sample = next((r for r in runs if r.dataset == spec.name and r.model == model), None)
    epochs = sample.epochs if sample else spec.epochs
    setup: dict[str, Any] = {
        "data": spec.name,
        "training images": sample.n_train if sample else spec.train_limit,
        "model selection": f"{epochs} fixed epochs, last-epoch weights",
    }
    if CLAIMS[model][0] == "szegedy-pool":
        setup["pool examples for"] = "the input only"
        setup["pool refresh"] = f"whole pool of {settings.pool_size} replaced every {settings.pool_every} updates"
    return setup


@dataclass
class GeneralizationResult:
    settings: dict[str, Any]
    runs: list[RunResult]
    comparisons: list[Comparison]
    complete: bool  # every planned run finished

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "complete": self.complete, "runs": [asdict(r) for r in self.runs],
                "comparisons": [{**asdict(c), "paper_relative": c.paper_relative} for c in self.comparisons]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GeneralizationResult:
        comparisons = [Comparison(**{k: v for k, v in c.items() if k != "paper_relative"}) for c in d["comparisons"]]
        return cls(d["settings"], [RunResult(**r) for r in d["runs"]], comparisons, d["complete"])


def _objective(model: str, train: Dataset, batch_size: int, seed: int, settings: GeneralizationSettings) -> Any:
    if CLAIMS[model][0] == "fgsm":
        return AdversarialObjective("fgsm", eps=settings.fgsm_eps, alpha=settings.fgsm_alpha)
    return AdversarialPool(train, batch_size=batch_size, pool_size=settings.pool_size, every=settings.pool_every,
                           fraction=settings.pool_fraction, attack=dict(settings.pool_attack), seed=seed)


def one_run(spec: DataSpec, model: str, adversarial: bool, seed: int, settings: GeneralizationSettings,
            cache: StageCache, progress: bool = False, device: str = "cpu") -> RunResult:
    """Train one (dataset, model, objective, seed), resumably; its result is cached as JSON."""
    training = CLAIMS[model][0] if adversarial else "standard"
    key = f"{spec.name}-{model}-{training}-seed{seed}"
    splits = load_mnist(spec.data_dir)
    train = splits.train.take(spec.train_limit) if spec.train_limit else splits.train
    config = default_config(model, seed=seed, **({"epochs": spec.epochs} if spec.epochs else {}))
    objective = _objective(model, train, config.batch_size, seed, settings) if adversarial else None
    described = objective.to_dict() if objective is not None else {"name": "cross_entropy"}
    cached = cache.read_json("runs", f"{key}.json")
    if cached is not None:
        run = RunResult(**cached)
        if (run.epochs, run.n_train, run.objective) == (config.epochs, len(train), json.loads(json.dumps(described))):
            return run
        cache.corrupt(cache.path("runs", f"{key}.json"), ValueError("it was made with other settings"))
    trained = train_registered(model, train, config, objective=objective, checkpoint=cache.path("checkpoints", f"{key}.safetensors"),
                               resume=True, progress=progress, device=device, run={"data": {"train": train.fingerprint()}})
    result = RunResult(
        dataset=spec.name, model=model, training=training, seed=seed, epochs=config.epochs, n_train=len(train),
        train_error=error_rate(trained.model, train), test_error=error_rate(trained.model, splits.test),
        seconds=trained.seconds, objective=described,
        pool_kept=list(getattr(objective, "kept", [])), device=str(device),
    )
    cache.write_json(asdict(result), "runs", f"{key}.json")
    return result


def _cost(spec: DataSpec, model: str, adversarial: bool, available: int) -> float:
    """A training's rough cost, for scheduling only: images x epochs x passes per image (the
    pool's L-BFGS searches cost about as much again as the training they sit in)."""
    epochs = spec.epochs or default_config(model).epochs
    images = min(available, spec.train_limit or available)
    return images * epochs * ({"szegedy-pool": 3.0, "fgsm": 2.0}[CLAIMS[model][0]] if adversarial else 1.0)


def _one_run_in_worker(args: tuple[Any, ...]) -> RunResult:
    """one_run in a worker process of `adversarial_generalization(jobs=N)`: one torch thread each
    (N workers share the machine's cores), its own cache handle on the same folder."""
    import torch

    torch.set_num_threads(1)
    spec, model, adversarial, seed, settings, work_dir, device = args
    return one_run(spec, model, adversarial, seed, settings, StageCache(Path(work_dir)), False, device)


def compare(runs: list[RunResult], settings: GeneralizationSettings) -> list[Comparison]:
    out = []
    for spec in settings.datasets:
        for model in settings.models:
            method, source, paper_standard, paper_adversarial = CLAIMS[model]
            by_seed = {(r.training, r.seed): r.test_error for r in runs if r.dataset == spec.name and r.model == model}
            seeds = [s for s in settings.seeds if ("standard", s) in by_seed and (method, s) in by_seed]
            standard, adversarial = [by_seed["standard", s] for s in seeds], [by_seed[method, s] for s in seeds]
            differences = setup_differences(run_setup(spec, model, runs, settings), PAPER_SETUP[model])
            mean = statistics.fmean(a - s for s, a in zip(standard, adversarial)) if seeds else float("nan")
            found = claim_verdict([a / s - 1 for s, a in zip(standard, adversarial)] if min(standard, default=0) > 0 else [],
                                  paper_adversarial / paper_standard - 1)
            out.append(Comparison(spec.name, model, method, source, paper_standard, paper_adversarial, seeds, standard,
                                  adversarial, mean, found.p_value, found.upper, verdict_text(found, differences),
                                  found.lower, differences))
    return out


def adversarial_generalization(settings: GeneralizationSettings, work_dir: str | Path, *, progress: bool = False,
                               device: str = "cpu", jobs: int = 1) -> GeneralizationResult:
    """Run (or resume) every planned training, seed by seed (so a partial study has whole pairs).

    The trainings are independent: `jobs` > 1 runs them in that many worker processes (spawned,
    one torch thread each; on a GPU they share it), each writing its own cached result, so a
    killed study still resumes run by run. Every run's result is the same for any `jobs`.
    """
    cache = StageCache(Path(work_dir))
    plan = [(seed, spec, model, adversarial) for seed in settings.seeds for spec in settings.datasets
            for model in settings.models for adversarial in (False, True)]
    bar = progress_bar(len(plan), "trainings", enabled=progress, unit="training")
    if jobs <= 1:
        runs = []
        for seed, spec, model, adversarial in plan:
            runs.append(one_run(spec, model, adversarial, seed, settings, cache, progress, device))
            bar.update()
    else:
        # training-set sizes from the IDX label files alone (the images are read by the workers)
        sizes = {spec: stream_length(stream_data("mnist", spec.data_dir, "train", 1000)[0]) or 1 for spec in settings.datasets}
        tasks = [(spec, model, adversarial, seed, settings, str(work_dir), str(device)) for seed, spec, model, adversarial in plan]
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            # longest first (the study ends with its longest run, not one started last); results keep the plan's order
            by_cost = sorted(range(len(tasks)), key=lambda i: -_cost(*tasks[i][:3], sizes[tasks[i][0]]))
            futures = {i: pool.submit(_one_run_in_worker, tasks[i]) for i in by_cost}
            for future in as_completed(futures.values()):
                future.result()  # a failed training stops the study here, with its error
                bar.update()
        runs = [futures[i].result() for i in range(len(tasks))]
    bar.close()
    return GeneralizationResult(settings.to_dict(), runs, compare(runs, settings), complete=True)


def collect(settings: GeneralizationSettings, work_dir: str | Path) -> GeneralizationResult:
    """The runs finished so far under work_dir (nothing is trained), compared."""
    cache = StageCache(Path(work_dir))
    runs = [RunResult(**d) for path in sorted(cache.path("runs").glob("*.json")) if (d := cache.read_json("runs", path.name))]
    planned = len(settings.seeds) * len(settings.datasets) * len(settings.models) * 2
    return GeneralizationResult(settings.to_dict(), runs, compare(runs, settings), complete=len(runs) == planned)


def default_settings(data_dir: str | None, *, quick: bool = False, epochs: int | None = None,
                     train_images: int | None = None) -> GeneralizationSettings:
    """The study `advlab reproduce adversarial-generalization` runs.

    Full: MNIST from `data_dir` and, when a `fashion-mnist` folder sits beside it, Fashion-MNIST
    (all 60,000 training images); every training image of each set unless `train_images` caps
    it, each model's registered epochs (FC100-100-10: 20, maxout: 12) unless `epochs` sets them;
    3 seeds. That is 24 trainings: minutes on a GPU with `--jobs`, hours on one CPU core (there
    `--epochs`/`--train-images` make it smaller, and the report says what ran). Quick: 300
    embedded images, 1 epoch, 2 seeds, a tiny pool (a smoke run).
    """
    if quick:
        return GeneralizationSettings(datasets=(DataSpec("embedded", None, 300, 1),), seeds=(0, 1), pool_size=6, pool_every=2,
                                      pool_attack=(("temperature", 1.0), ("search_steps", 3), ("max_iter", 10)))
    datasets = [DataSpec("mnist" if data_dir else "embedded", data_dir, train_images, epochs)]
    fashion = Path(data_dir).parent / "fashion-mnist" if data_dir else None
    if fashion is not None and fashion.is_dir():
        datasets.append(DataSpec("fashion-mnist", str(fashion), train_images, epochs))
    return GeneralizationSettings(datasets=tuple(datasets))
