"""What a Szegedy reproduction does (`SzegedySettings`) and what it returns (typed results)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from advlab.analysis.lipschitz import LayerBound
from advlab.analysis.units import UnitsVsDirections
from advlab.errors import InputError
from advlab.experiments.szegedy import paper  # a module: the package's __init__ imports nothing

ZOO = ("fc10-1e-4", "fc10-1e-2", "fc10-1", "fc100-100-10", "fc200-200-10", "ae400-10")
SPLIT = (("fc100-100-10", "P1"), ("fc123-456-10", "P1"), ("fc100-100-10", "P2"))


def display_name(model: str, part: str | None = None) -> str:
    """The paper's name: fc10-1e-4 -> FC10(1e-4), fc100-100-10 -> FC100-100-10; P2 adds a prime."""
    name = f"FC10({model[len('fc10-'):]})" if model.startswith("fc10-") else model.upper()
    return name + "'" if part == "P2" else name


ARMS = ("no pool", "input pool", "per-layer pool")  # Sec. 4.2's comparison: the paper's control, its rejected variant, its method


@dataclass(frozen=True)
class PoolStudySettings:
    """Sec. 4.2: `model` trained with its registered settings (the paper: weight decay, no dropout)
    with no pool, with a pool of input examples only, and with one pool per layer (the input and
    every sigmoid layer), for each seed; the pools as `advlab.training.objectives.LayerPool`
    (pool_size slots in all, split evenly among the pool's layers, built at the first update; a random
    refresh_fraction of each replaced every refresh_every updates, across epochs)."""

    model: str = "fc100-100-10"
    seeds: tuple[int, ...] = (0, 1, 2)
    # None: the model's registered epochs (FC100-100-10: 20, so that the no-pool arm is Table 1's training), capped by
    # SzegedySettings.max_epochs; with a short L-BFGS, the 9 trainings take about 20 minutes of one core
    epochs: int | None = None
    pool_size: int = 300
    refresh_every: int = 100
    refresh_fraction: float = 0.1
    fraction: float = 0.25  # pool examples per clean example in each minibatch
    attack: tuple[tuple[str, Any], ...] = (("temperature", 1.0), ("search_steps", 4), ("max_iter", 20))

    def __post_init__(self) -> None:
        if len(self.seeds) < 2 or len(set(self.seeds)) != len(self.seeds):
            raise InputError(f"a paired comparison needs at least 2 distinct seeds, got {list(self.seeds)}")
        if self.epochs is not None and self.epochs < 1:
            raise InputError(f"epochs must be >= 1, got {self.epochs}")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps({**asdict(self), "attack": dict(self.attack)}))


@dataclass(frozen=True)
class SzegedySettings:
    """What a run does; its fingerprint (with the data's) names the cache folder.

    The attack is Sec. 4.1's: box-constrained L-BFGS on c |r| + loss_f(x + r, l) for a target
    label l, with the cross-entropy loss (`temperature` 1). Each attacked image gets one target
    drawn uniformly among the wrong classes from the run's seed (the main measure, used by
    Tables 1-4); Table 1 adds the mean over all nine targets (on the first `n_all_targets` images;
    exact on linear models) and the untargeted minimum.
    """

    zoo: tuple[str, ...] = ZOO
    split: tuple[tuple[str, str], ...] = SPLIT  # (model, "P1" or "P2") for Tables 3-4
    n_attack: int = 300  # training images attacked per zoo model (Tables 1, 2, Sec. 4.3)
    n_attack_test: int = 300  # test images attacked per split model (Table 4)
    n_all_targets: int = 10  # images attacked towards every wrong class (Table 1 extra column)
    untargeted: bool = True  # Table 1 extra column: the untargeted minimum
    attack: str = "lbfgs"
    attack_params: tuple[tuple[str, Any], ...] = (("temperature", 1.0),)  # keyword arguments of the attack
    max_epochs: int | None = None  # cap on every model's training epochs (quick runs)
    noise_stddevs: tuple[float, ...] = (0.1, 0.3)  # Table 2 noise rows
    split_noise_stddevs: tuple[float, ...] = (0.06, 0.1)  # Table 4 noise rows
    units_model: str = "fc100-100-10"
    units_layer: str = "act2"  # the model's last hidden layer (after its sigmoid)
    n_units: int = 8
    n_random: int = 8
    top_k: int = 8
    figure_examples: int = 6
    seed: int = 0
    pool_study: PoolStudySettings | None = PoolStudySettings()  # Sec. 4.2 (None: not run)
    # (zoo model, factor): that model trained factor x its epochs from the start (its learning-rate schedule
    # spanning them all), fed Table 2's rows: does a model nearer the paper's test error move its transfer
    # cells towards the paper's? (entries whose model is not in the zoo are skipped)
    longer: tuple[tuple[str, int], ...] = (("fc100-100-10", 3),)

    def __post_init__(self) -> None:
        if self.n_attack < 1 or self.n_attack_test < 1 or self.n_all_targets < 0:
            raise InputError(f"need at least one image to attack, got {self.n_attack}, {self.n_attack_test}, {self.n_all_targets}")
        if self.units_model not in self.zoo:
            raise InputError(f"units_model {self.units_model!r} must be one of the zoo {list(self.zoo)}")
        if any(part not in ("P1", "P2") for _, part in self.split):
            raise InputError(f"split parts must be P1 or P2, got {[p for _, p in self.split]}")
        if any(factor < 2 for _, factor in self.longer):
            raise InputError(f"longer: each entry is (a model, a factor >= 2), got {[list(e) for e in self.longer]}")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise InputError(f"max_epochs must be >= 1, got {self.max_epochs}")

    @classmethod
    def quick(cls, seed: int = 0) -> SzegedySettings:
        """One epoch, 6 images per model, a short attack, every-target means on linear models only
        (exact): every stage runs, in seconds."""
        return cls(
            n_attack=6, n_attack_test=6, n_all_targets=0, max_epochs=1,
            attack_params=(("temperature", 1.0), ("search_steps", 3), ("max_iter", 15)),
            n_units=3, n_random=3, top_k=4, figure_examples=3, seed=seed,
            pool_study=PoolStudySettings(seeds=(0, 1), pool_size=12, refresh_every=20,
                                         attack=(("temperature", 1.0), ("search_steps", 3), ("max_iter", 10))),
        )

    def to_dict(self) -> dict[str, Any]:
        study = self.pool_study.to_dict() if self.pool_study is not None else None
        return json.loads(json.dumps({**asdict(self), "attack_params": dict(self.attack_params), "pool_study": study}))


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
    training: dict[str, Any] = field(default_factory=dict)  # the training configuration used (TrainConfig.to_dict())


@dataclass
class LongerTraining:
    """A zoo model trained `factor` x its epochs from the start (`model`: its ModelEval), fed Table 2's rows:
    error[i] on row i's images (`TransferTable.rows` order), clean_error[i] on them unperturbed."""

    key: str  # the zoo model's key
    factor: int
    model: ModelEval
    rows: list[str]
    error: list[float]
    clean_error: list[float]


@dataclass
class MinimalDistortion:
    """Table 1's distortion columns for one model, averaged over the attacked training images it
    classifies correctly and on which the attack reached its goal.

    targeted_*: one seeded random wrong target per image (the paper's definition, the main column);
    exact_targeted: the proven minimum to the same targets (linear models only);
    all_targets_*: the mean over all wrong targets of the per-target minimum, on `all_targets_n`
    images, by `all_targets_method` ("exact" for linear models, else the attack);
    untargeted_*: the smallest perturbation that changes the prediction (exact: proven, linear only).
    """

    key: str
    n_attacked: int
    n_clean_correct: int
    targeted_success_rate: float
    targeted_mean: float
    targeted_median: float
    exact_targeted_mean: float | None
    all_targets_mean: float | None
    all_targets_n: int
    all_targets_method: str
    untargeted_mean: float | None
    untargeted_success_rate: float | None
    exact_untargeted_mean: float | None
    seconds: float


@dataclass
class TransferTable:
    """error[i][j]: error of model `columns[j]` on the images of row i (with their true labels).

    index[i]: the attacked images row i was measured on (indices into the attacked set), and every
    baseline of that row was measured on exactly them: clean_error[i][j] (unperturbed),
    noise_error[i][j] (Gaussian directions of the same per-image L2 norms; None for noise rows).
    factor[i]: how the row's perturbations were scaled (1 as found; the paper's magnification),
    at_paper[i][j]: the error with the row's perturbations rescaled to the paper's distortion for
    that row (None where the paper gives none), a test of "the gap is the distortion's size".
    """

    rows: list[str]
    columns: list[str]
    error: list[list[float]]
    mean_distortion: list[float]
    n: list[int]
    index: list[list[int]]
    clean_error: list[list[float]]
    noise_error: list[list[float] | None]
    factor: list[float]
    at_paper: list[list[float] | None]

    def cell(self, row: str, column: str) -> float:
        return self.error[self.rows.index(row)][self.columns.index(column)]

    def row(self, name: str) -> int:
        return self.rows.index(name)


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
class PoolRun:
    """One Sec. 4.2 training: `arm` (one of ARMS) with `seed`; attacked/reached: pool examples made
    and kept per layer (by the last uninterrupted stretch of the training, when it was resumed)."""

    arm: str
    seed: int
    layers: list[str]
    epochs: int
    n_train: int
    train_error: float
    test_error: float
    seconds: float
    attacked: dict[str, int]
    reached: dict[str, int]
    objective: dict[str, Any]


@dataclass
class PoolComparison:
    """A pool arm against the no-pool arm, paired by seed: relative change of the test error, the
    verdict on the paper's claimed change (`advlab.experiments.verdict`), the setup differences."""

    arm: str
    seeds: list[int]
    baseline: list[float]
    pooled: list[float]
    relative: list[float]
    mean_relative: float
    lower: float | None
    upper: float | None
    p_value: float | None
    verdict: str  # the verdict's word (reproduced / not reproduced / inconclusive)
    text: str  # the verdict in words, "setup differs" appended where it does
    setup: dict[str, Any]
    setup_differences: list[str]


@dataclass
class PoolStudy:
    settings: dict[str, Any]
    runs: list[PoolRun]
    comparisons: list[PoolComparison]
    paper_relative: float  # the paper's claimed relative change of the test error
    changes_verdict: bool  # the per-layer pool's verdict differs from the input pool's

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PoolStudy:
        return cls(d["settings"], [PoolRun(**r) for r in d["runs"]], [PoolComparison(**c) for c in d["comparisons"]],
                   d["paper_relative"], d["changes_verdict"])


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
    pool_study: PoolStudy | None = None  # Sec. 4.2
    longer: list[LongerTraining] = field(default_factory=list)
    # for figures, not in to_dict: per zoo model (x, x_adv, label, adversarial prediction)
    examples: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = field(repr=False, default_factory=dict)
    unit_images: torch.Tensor | None = field(repr=False, default=None)  # (units + random, k, 1, 28, 28)

    def to_dict(self) -> dict[str, Any]:
        skip = {"examples", "unit_images"}
        out = {k: v for k, v in asdict(self).items() if k not in skip}
        out["units"].update(mean_unit_purity=self.units.mean_unit_purity, mean_random_purity=self.units.mean_random_purity)
        out["paper"] = paper.all_cells()
        return out
