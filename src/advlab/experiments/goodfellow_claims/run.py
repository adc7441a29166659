"""`goodfellow_claims(splits, settings, work_dir=...)`: train the models, measure each claim of
`paper.CLAIMS` and put advlab's figure beside the paper's (see the package docstring).

Everything is cached under `work_dir/cache/<digest of the settings and the data>/`: a checkpoint
per model, written every epoch (a killed training resumes from its last epoch), and one JSON
file per finished stage, so a rerun of the same settings resumes where the last one stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advlab.data import Dataset, Splits
from advlab.errors import InputError
from advlab.experiments.cache import StageCache
from advlab.experiments.goodfellow_claims.heads import SIGMOID, SOFTMAX, Ensemble, Head, HeadFGSM, NoiseObjective, one_vs_all
from advlab.experiments.goodfellow_claims.paper import (
    CLAIMS,
    MNIST,
    PAPER_SETUP,
    ZERO_TOLERANCE,
    PaperClaim,
    agrees,
)
from advlab.experiments.verdict import NOT_REPRODUCED, REPRODUCED, setup_differences
from advlab.models.inference import logits
from advlab.models.registry import get_spec
from advlab.training import default_config, error_rate, train_registered
from advlab.training.loops import Objective, describe_objective
from advlab.validation import check_count, check_eps


@dataclass(frozen=True)
class ClaimsSettings:
    seed: int = 0
    eps: float = 0.25
    maxout_epochs: int = 4  # every maxout network (the paper trains to convergence with early stopping)
    members: int = 12  # ensemble members (as the paper)
    rbf_epochs: int = 10
    softmax_epochs: int = 30
    rubbish_samples: int = 10_000  # Gaussian samples (the paper: 10,000)
    fooling_samples: int = 100  # Gaussian samples per target class for the fooling search
    maxout: dict[str, Any] = field(default_factory=dict)  # maxout architecture keywords over the registered ones

    def __post_init__(self) -> None:
        check_eps(self.eps, (0.0, 1.0))
        for name in ("maxout_epochs", "members", "rbf_epochs", "softmax_epochs", "rubbish_samples", "fooling_samples"):
            check_count(name, getattr(self, name))
        if self.members < 2:
            raise InputError(f"an ensemble needs at least 2 members, got {self.members}")

    @classmethod
    def quick(cls, seed: int = 0, eps: float = 0.25) -> ClaimsSettings:
        """A smoke run of every stage: 1 epoch per maxout, 3 members, 1,000 Gaussian samples."""
        return cls(seed=seed, eps=eps, maxout_epochs=1, members=3, rbf_epochs=2, softmax_epochs=3, rubbish_samples=1000,
                   fooling_samples=20)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def maxout_architecture(self) -> dict[str, Any]:
        return {**get_spec("maxout").architecture, **self.maxout}


@dataclass(frozen=True)
class ModelPlan:
    """One model to train: registered `name`, its seed, epochs, objective and how its outputs are read."""

    key: str
    name: str
    seed: int
    epochs: int
    head: Head = SOFTMAX
    objective: Objective | None = None  # None: cross-entropy
    architecture: dict[str, Any] = field(default_factory=dict)


def model_plans(settings: ClaimsSettings) -> list[ModelPlan]:
    """maxout-0 (the naive maxout) first, the controls, then the other ensemble members."""
    s, arch = settings, settings.maxout

    def maxout(key: str, seed: int, **kw: Any) -> ModelPlan:
        return ModelPlan(key, "maxout", seed, s.maxout_epochs, architecture=arch, **kw)

    return [
        maxout("maxout-0", s.seed),
        maxout("noise-sign", s.seed, objective=NoiseObjective("sign", s.eps)),
        maxout("noise-uniform", s.seed, objective=NoiseObjective("uniform", s.eps)),
        ModelPlan("rbf", "rbf", s.seed, s.rbf_epochs, head=SIGMOID, objective=one_vs_all),
        ModelPlan("softmax", "softmax", s.seed, s.softmax_epochs),
        maxout("sigmoid", s.seed, head=SIGMOID, objective=one_vs_all),
        *(maxout(f"maxout-{i}", s.seed + i) for i in range(1, s.members)),
    ]


@dataclass
class ClaimsResult:
    settings: dict[str, Any]
    data_source: str
    n_train: int
    n_test: int
    models: dict[str, dict[str, Any]]  # key -> registered name, settings, errors, training time
    measurements: dict[str, float | None]  # the keys of paper.CLAIMS and a few more
    details: dict[str, Any]  # per-class figures: rubbish shares, fooling success, member errors
    rows: list[dict[str, Any]]  # one per claim: paper, advlab, ratio, verdict, setup differences
    seconds: dict[str, float]  # spent computing each stage, in the run that computed it (a resumed training: since the resume)
    cache_dir: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> ClaimsResult:
        """The result a `to_dict()` document (a report's results.json) holds; its cache folder is not recorded."""
        return cls(**{name: document.get(name, "") for name in cls.__dataclass_fields__})


def fingerprint(settings: ClaimsSettings, splits: Splits) -> str:
    """A digest of the settings and of both splits."""
    digest = hashlib.sha256(json.dumps(settings.to_dict(), sort_keys=True).encode())
    for split in (splits.train, splits.test):
        digest.update(split.fingerprint().encode())
    return digest.hexdigest()[:16]


def objective_dict(objective: Objective | None) -> dict[str, Any]:
    """An objective's settings: its to_dict(), else its name (None: cross-entropy)."""
    return describe_objective(objective) if objective is not None else {"name": "cross_entropy"}


def plan_digest(plan: ModelPlan, splits: Splits) -> str:
    """A digest of what a model's training depends on: the plan and the training split."""
    described = {"name": plan.name, "seed": plan.seed, "epochs": plan.epochs, "objective": objective_dict(plan.objective),
                 "architecture": plan.architecture}
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode())
    digest.update(splits.train.fingerprint().encode())
    return digest.hexdigest()[:16]


def _mean(values: torch.Tensor) -> float | None:
    return float(values.double().mean()) if values.numel() else None


def fgsm_figures(model: nn.Module, head: Head, data: Dataset, eps: float, progress: bool) -> dict[str, float | None]:
    """Clean and FGSM error, mean confidence on clean inputs and on the misclassified FGSM examples."""
    result = HeadFGSM(model, eps=eps, head=head, progress=progress)(data.images, data.labels)
    clean, adversarial = head.probabilities(result.clean_logits), head.probabilities(result.adv_logits)
    wrong = result.adv_logits.argmax(1) != data.labels
    return {"clean_error": float((result.clean_logits.argmax(1) != data.labels).double().mean()),
            "clean_confidence": _mean(clean.amax(1)), "fgsm_error": float(wrong.double().mean()),
            "fgsm_confidence": _mean(adversarial.amax(1)[wrong])}


def gaussian_samples(n: int, shape: torch.Size, seed: int) -> torch.Tensor:
    """n draws of N(0, I) shaped like the images, from a generator seeded with `seed` (CPU)."""
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))


def rubbish_figures(model: nn.Module, head: Head, samples: torch.Tensor) -> dict[str, Any]:
    """Share of samples given > 0.5 probability for some class, the mean confidence on those and
    the share of them in each class."""
    with torch.no_grad():
        z = logits(model, samples)
    confidence, predicted = head.probabilities(z).max(1)
    fooled = confidence > 0.5
    counts = predicted[fooled].bincount(minlength=z.shape[1]).double()
    return {"error": float(fooled.double().mean()), "confidence": _mean(confidence[fooled]),
            "shares": (counts / counts.sum()).tolist() if bool(fooled.any()) else None}


def fooling_figures(model: nn.Module, samples: torch.Tensor, classes: int, eps: float) -> list[float]:
    """Per target class i, the share of one gradient sign step x + eps sign(grad_x log p(i | x))
    from a Gaussian sample that ends classified as i with > 0.5 probability (the samples are
    split evenly among the classes; the box is the samples' own range, so nothing is clipped)."""
    targets = torch.arange(classes).repeat_interleave(len(samples) // classes)
    samples = samples[: len(targets)]
    box = (float(samples.min()) - eps, float(samples.max()) + eps)
    stepped = HeadFGSM(model, eps=eps, head=SOFTMAX, bounds=box).craft(samples, targets, targeted=True)
    with torch.no_grad():
        z = logits(model, stepped)
    probabilities = SOFTMAX.probabilities(z)
    hit = (z.argmax(1) == targets) & (probabilities.gather(1, targets[:, None]).squeeze(1) > 0.5)
    return hit.double().view(classes, -1).mean(1).tolist()


def agreement_figures(source: nn.Module, softmax: nn.Module, rbf: nn.Module, data: Dataset, eps: float,
                      progress: bool) -> dict[str, float | None]:
    """On the FGSM examples of `source` (the maxout), how often the other models predict its class:
    over its errors, and over the examples where the models compared all err."""
    crafted = HeadFGSM(source, eps=eps, progress=progress)(data.images, data.labels)
    with torch.no_grad():
        s, r = logits(softmax, crafted.x_adv).argmax(1), logits(rbf, crafted.x_adv).argmax(1)
    m, y = crafted.adv_logits.argmax(1), data.labels
    wrong = m != y
    return {"rbf_on_maxout_errors": _mean((r == m)[wrong]), "softmax_on_maxout_errors": _mean((s == m)[wrong]),
            "softmax_where_both_err": _mean((s == m)[wrong & (s != y)]), "rbf_where_both_err": _mean((r == m)[wrong & (r != y)]),
            "rbf_on_softmax_where_all_err": _mean((r == s)[wrong & (s != y) & (r != y)])}


def claim_row(claim: PaperClaim, measured: float | None, differences: list[str]) -> dict[str, Any]:
    """advlab's figure beside the paper's, their ratio (None where the paper's is 0) and the verdict:
    reproduced when `paper.agrees` (or, where the paper has 0, the figure is at most ZERO_TOLERANCE), "setup differs" appended where it does; figures of another
    data set are shown, not compared."""
    ratio = measured / claim.value if measured is not None and claim.value > 0 else None
    if claim.data != MNIST:
        verdict = f"not compared: the paper's figure is {claim.data}'s"
    elif measured is None:
        verdict = "not measured (no example qualified)"
    elif ratio is None:
        verdict = REPRODUCED if measured <= ZERO_TOLERANCE else NOT_REPRODUCED
    else:
        verdict = REPRODUCED if agrees(measured, claim.value) else NOT_REPRODUCED
    if differences and claim.data == MNIST:
        verdict += "; setup differs"
    return {"key": claim.key, "section": claim.section, "claim": claim.text, "data": claim.data, "paper": claim.value,
            "advlab": measured, "ratio": ratio, "verdict": verdict, "setup_differences": differences}


def our_setup(settings: ClaimsSettings, n_train: int) -> dict[str, dict[str, object]]:
    """This run's setup in the terms of `paper.PAPER_SETUP`."""
    arch = settings.maxout_architecture
    training = f"{settings.maxout_epochs} fixed epochs (Adam, lr {default_config('maxout').lr:g}), last epoch's weights"
    common = {"training images": n_train, "eps": settings.eps, "maxout training": training}
    return {
        "noise": common,
        "rbf": {**common, "beta": "diagonal per unit"},
        "ensemble": {**common, "members": settings.members},
        "transfer": common,
        "rubbish": {**common, "Gaussian samples": settings.rubbish_samples},
        "cifar": {"data": MNIST, "model": f"maxout MLP, {arch['layers']} layers of {arch['hidden']} units x {arch['pieces']} pieces"},
    }


def goodfellow_claims(splits: Splits, settings: ClaimsSettings | None = None, *, work_dir: str | Path,
                      progress: bool = False) -> ClaimsResult:
    """Train (or resume) every model, run (or read) every stage and compare with the paper."""
    settings = settings or ClaimsSettings()
    cache = StageCache(Path(work_dir) / "cache" / fingerprint(settings, splits))
    models_dir = Path(work_dir) / "cache" / "models"  # shared by runs whose settings differ elsewhere (e.g. more members)
    plans = {plan.key: plan for plan in model_plans(settings)}
    trained: dict[str, nn.Module] = {}
    seconds: dict[str, float] = {}

    def model(key: str) -> nn.Module:
        if key not in trained:
            plan = plans[key]
            config = default_config(plan.name, epochs=plan.epochs, seed=plan.seed)
            trained[key] = train_registered(
                plan.name, splits.train, config, architecture=plan.architecture, objective=plan.objective,
                checkpoint=models_dir / f"{key}-{plan_digest(plan, splits)}.safetensors", resume=True, progress=progress,
                run={"data": {"train": splits.train.fingerprint()}}, extra={"data_source": {"source": splits.source}},
            ).model
        return trained[key]

    def describe(key: str) -> dict[str, Any]:
        plan, net = plans[key], model(key)
        return {"model": plan.name, "architecture": {**get_spec(plan.name).architecture, **plan.architecture}, "seed": plan.seed,
                "train_config": default_config(plan.name, epochs=plan.epochs, seed=plan.seed).to_dict(),
                "objective": objective_dict(plan.objective),
                "head": plan.head.name, "train_error": error_rate(net, splits.train), "test_error": error_rate(net, splits.test)}

    def stage(name: str, compute: Callable[[], Any], where: StageCache = cache, entry: str | None = None) -> Any:
        """The stage's value, computed now or read from the cache, with the seconds it took when computed."""
        def timed() -> dict[str, Any]:
            start = time.perf_counter()
            value = compute()
            return {"value": value, "seconds": time.perf_counter() - start}

        found, _ = where.json_stage(entry or name, timed, lambda v: v, lambda v: {"value": v["value"], "seconds": float(v["seconds"])})
        seconds[name] = round(found["seconds"], 1)
        return found["value"]

    # a model's stage (its training and errors) is kept beside its checkpoint, for every run that trains the same model
    models = {key: stage(f"model-{key}", lambda key=key: describe(key), StageCache(models_dir), f"{key}-{plan_digest(plans[key], splits)}")
              for key in plans}
    test, eps = splits.test, settings.eps
    noise = stage("noise", lambda: {k: fgsm_figures(model(k), SOFTMAX, test, eps, progress) for k in ("maxout-0", "noise-sign", "noise-uniform")})
    rbf = stage("rbf", lambda: fgsm_figures(model("rbf"), SIGMOID, test, eps, progress))
    members = [f"maxout-{i}" for i in range(settings.members)]

    def ensemble() -> dict[str, Any]:
        whole = Ensemble([model(k) for k in members])
        figures = fgsm_figures(whole, SOFTMAX, test, eps, progress)
        one = HeadFGSM(model(members[0]), eps=eps, progress=progress)(test.images, test.labels)
        with torch.no_grad():
            member_error = float((logits(whole, one.x_adv).argmax(1) != test.labels).double().mean())
        return {**figures, "member_fgsm_error": member_error, "member_own_fgsm_error": float(one.success.double().mean())}

    ensemble_figures = stage("ensemble", ensemble)
    agreement = stage("agreement", lambda: agreement_figures(model("maxout-0"), model("softmax"), model("rbf"), test, eps, progress))
    shape = test.images.shape[1:]
    rubbish = stage("rubbish", lambda: {
        label: rubbish_figures(model(key), head, gaussian_samples(settings.rubbish_samples, shape, settings.seed))
        for label, key, head in (("maxout", "maxout-0", SOFTMAX), ("sigmoid", "sigmoid", SIGMOID),
                                 ("softmax", "softmax", SOFTMAX), ("rbf", "rbf", SIGMOID))})
    classes = int(splits.train.labels.max()) + 1
    fooling = stage("fooling", lambda: fooling_figures(
        model("maxout-0"), gaussian_samples(settings.fooling_samples * classes, shape, settings.seed + 1), classes, eps))

    measurements: dict[str, float | None] = {
        **{f"{k}.{m}": v for k, figures in noise.items() for m, v in figures.items()},
        **{f"rbf.{m}": v for m, v in rbf.items()},
        **{f"ensemble.{m}": v for m, v in ensemble_figures.items()},
        **{f"agreement.{m}": v for m, v in agreement.items()},
        **{f"rubbish.{k}.{m}": v for k, figures in rubbish.items() for m, v in figures.items() if m != "shares"},
        "fooling.mean_success": sum(fooling) / len(fooling), "fooling.min_success": min(fooling), "fooling.max_success": max(fooling),
    }
    shares = rubbish["maxout"]["shares"]
    measurements.update({f"rubbish.maxout.share_{c}": (shares[c] if shares else None) for c in range(classes)})
    setups = our_setup(settings, len(splits.train))
    rows = [claim_row(c, measurements.get(c.key), setup_differences(setups[c.section], PAPER_SETUP[c.section])) for c in CLAIMS]
    details = {"rubbish_shares": {k: v["shares"] for k, v in rubbish.items()}, "fooling_success": fooling,
               "member_test_errors": [models[k]["test_error"] for k in members]}
    cache.write_json({"settings": settings.to_dict(), "data": splits.source}, "settings.json")
    return ClaimsResult(settings.to_dict(), splits.source, len(splits.train), len(splits.test), models, measurements, details,
                        rows, seconds, str(cache.root))
