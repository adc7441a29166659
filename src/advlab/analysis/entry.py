"""One evaluation entry: `evaluate_robustness(model, data, labels=None, *, eps, suite=None, settings=None, out=None, state_path=None)`.

data: (x, y) tensors or numpy arrays (as `data, labels` or a tuple), an `advlab.data.Dataset`,
a torch Dataset of (x, y) examples, a DataLoader or any iterable of (x, y) batches (in order:
examples are numbered as they come, and every random draw is a function of (seed, index), so
all forms give the same numbers as the tensors they hold).

Without `suite`: each fixed-budget attack of the settings alone at each eps (`grid_evaluation`),
with the gradient-masking checks. With `suite` ("fast", the default suite `DEFAULT_SUITE`:
adaptive APGD; "standard": AutoAttack's attacks; "quick"; ...; or a list of attacks as data): the
cascade of `advlab.analysis.evaluation.evaluate_suite` at each eps.
Both return one `RobustnessEvaluation`, whose bracket [certified, attacked] has a lower end only
where a verifier ran (`EvaluationSettings.certify`); `bracket_reason` says which case holds.

In memory by default, nothing written. With `out`, a grid streams: batches are evaluated one at a
time, their per-example outcomes stored in the folder `out` (`advlab.analysis.streamed`), and a
killed run resumes from it; a suite keeps its state in `out` (one file per eps) and resumes from
it. `state_path` names a suite's state files explicitly (`STATE.eps<EPS>.npz`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from advlab.analysis.carlini import run_carlini_checks
from advlab.analysis.evaluation import SuiteEvaluation, evaluate_suite
from advlab.analysis.masking import suite_checks
from advlab.analysis.results import EvaluationSettings, PerExample, RobustnessEvaluation
from advlab.analysis.robustness import DEFAULT_EPS, evaluation_plan, grid_evaluation
from advlab.analysis.streamed import stream_robustness
from advlab.attacks import ATTACKS
from advlab.attacks.suites import resolve_suite
from advlab.data import Dataset
from advlab.data.stream import as_batches
from advlab.errors import InputError
from advlab.models.inference import logits
from advlab.validation import as_tensor, check_bounds, check_eps, check_images, check_labels, check_norm

SETTING_NAMES = frozenset(f.name for f in dataclasses.fields(EvaluationSettings))
GRID_ONLY = ("attacks", "attack_params", "source_model", "large_eps")
PROVEN = ("certified", "verified")


def evaluation_settings(settings: EvaluationSettings | None, options: dict[str, Any]) -> EvaluationSettings:
    """`settings` (default: all defaults) with the keyword shorthand applied (same names as its fields)."""
    unknown = sorted(set(options) - SETTING_NAMES)
    if unknown:
        raise InputError(f"unknown evaluation setting(s) {', '.join(unknown)}; known: {', '.join(sorted(SETTING_NAMES))}")
    settings = settings if settings is not None else EvaluationSettings()
    if not isinstance(settings, EvaluationSettings):
        raise InputError(f"settings must be an EvaluationSettings, got {type(settings).__name__}")
    return dataclasses.replace(settings, **options) if options else settings


def gather(data: Any, labels: Any = None, *, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) tensors from any accepted form of data (module docstring), in the order given."""
    if labels is not None:
        return as_tensor("images", data), as_tensor("labels", labels)
    if isinstance(data, Dataset):
        return data.images, data.labels
    if isinstance(data, torch.Tensor | np.ndarray):
        raise InputError("images without labels: call evaluate_robustness(model, x, y, ...) or pass (x, y)")
    if isinstance(data, tuple | list) and len(data) == 2 and all(isinstance(t, torch.Tensor | np.ndarray) for t in data):
        return as_tensor("images", data[0]), as_tensor("labels", data[1])
    xs, ys = [], []
    for k, batch in enumerate(_batches(data, batch_size)):
        if not (isinstance(batch, Sequence) and len(batch) == 2):
            raise InputError(f"batch {k} of the data is not an (x, y) pair but {type(batch).__name__}")
        xs.append(as_tensor("images", batch[0]).detach())
        ys.append(as_tensor("labels", batch[1]).detach().reshape(-1))
    if not xs:
        raise InputError("the data held no examples")
    return torch.cat(xs), torch.cat(ys)


def _batches(data: Any, batch_size: int) -> Iterable[Any]:
    """A torch Dataset of examples batched by a non-shuffling DataLoader; batches as they come otherwise."""
    if isinstance(data, TorchDataset) and not isinstance(data, DataLoader):
        return DataLoader(data, batch_size=batch_size, shuffle=False)
    if isinstance(data, str | bytes) or not isinstance(data, Iterable):
        raise InputError(f"data must be (x, y) tensors or arrays, a Dataset, a DataLoader or an iterable of (x, y) batches, "
                         f"got {type(data).__name__}")
    return as_batches(data)


def _classes(model: nn.Module, x: torch.Tensor) -> int:
    return int(logits(model, x[:1]).shape[1])


def evaluate_robustness(
    model: nn.Module,
    data: Any,
    labels: Any = None,
    *,
    eps: float | Sequence[float] | None = None,
    suite: str | Sequence[Any] | None = None,
    settings: EvaluationSettings | None = None,
    out: str | os.PathLike[str] | None = None,
    state_path: str | os.PathLike[str] | None = None,
    **options: Any,
) -> RobustnessEvaluation:
    """Robust accuracy of `model` on `data` at each eps (module docstring).

    eps: one budget or a list (a grid's default: 0 to 0.3 by 0.05; a suite needs it).
    settings: an `EvaluationSettings`; keywords named as its fields are a shorthand for
    `dataclasses.replace(settings, ...)`. Returns None on the ranks other than 0 of a
    torch.distributed process group when streaming (`out`)."""
    settings = evaluation_settings(settings, options)
    start = time.perf_counter()
    eps_list = None if eps is None else [float(e) for e in ((eps,) if isinstance(eps, int | float) else eps)]
    if suite is None:
        if state_path is not None:
            raise InputError("state_path keeps a suite's state; a grid resumes from its out= folder")
        evaluation = _grid(model, data, labels, list(DEFAULT_EPS) if eps_list is None else eps_list, settings, out)
    else:
        given = [name for name in GRID_ONLY if getattr(settings, name) is not None]
        if given:
            raise InputError(f"a suite names its own attacks and their settings: give suite or {', '.join(given)}, not both")
        if not eps_list:
            raise InputError("a suite needs eps: one budget or a list (it runs the whole cascade at each)")
        evaluation = _suite(model, data, labels, eps_list, suite, settings, out, state_path)
    if evaluation is not None:
        evaluation.seconds["total"] = time.perf_counter() - start
    return evaluation  # type: ignore[return-value]


def _grid(model: nn.Module, data: Any, labels: Any, eps: list[float], settings: EvaluationSettings,
          out: str | os.PathLike[str] | None) -> RobustnessEvaluation | None:
    keywords = {"attacks": settings.attacks, "eps": eps, "attack_params": settings.attack_params,
                "source_model": settings.source_model, "source_name": settings.source_name, "bounds": settings.bounds,
                "batch_size": settings.batch_size, "seed": settings.seed, "large_eps": settings.large_eps,
                "tolerance": settings.tolerance, "progress": settings.progress}
    if settings.norm != "linf":
        raise InputError("an eps grid runs L-inf attacks; norm='l2' goes with a suite")
    evaluation_plan(settings.attacks, eps, settings.attack_params, check_bounds(settings.bounds))  # refuse bad settings before reading data
    if out is not None:
        if settings.certify is not None:
            raise InputError("a streamed grid (out=) runs no verifier: drop certify, or evaluate in memory")
        source = as_batches((data, labels) if labels is not None else data, settings.batch_size)
        evaluation = stream_robustness(model, source, out, **keywords)
        if evaluation is None:
            return None
        x, y = None, None
    else:
        x, y = gather(data, labels, batch_size=settings.batch_size)
        evaluation = grid_evaluation(model, x, y, keep_adversarial=settings.keep_adversarial, **keywords)
        evaluation.classes = _classes(model, check_images("images", x, check_bounds(settings.bounds)))
    evaluation.seconds = {attack: sum(p.seconds for p in evaluation.points if p.attack == attack) for attack in evaluation.attacks}
    if settings.certify is not None and x is not None and y is not None:
        began = time.perf_counter()
        _certify_grid(evaluation, model, x, y, settings)
        evaluation.seconds["certify"] = time.perf_counter() - began
    _explain(evaluation, settings)
    return evaluation


def _certify_grid(evaluation: RobustnessEvaluation, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  settings: EvaluationSettings) -> None:
    """At each eps > 0, the verifier on the points no attack broke: proven robust, or (with the
    MILP) broken by its counterexample, which then counts as the point's adversarial input."""
    pe = evaluation.per_example
    assert pe is not None  # grid_evaluation always fills it in
    y = check_labels("labels", y, len(x))
    certified = np.zeros(pe.outcome.shape, dtype=bool)
    for i, e in enumerate(evaluation.eps):
        todo = np.flatnonzero(pe.outcome[i] == "")
        if e == 0 or not len(todo):
            continue
        index = torch.from_numpy(todo)
        result = settings.certify(model, x[index], y[index], eps=e, bounds=settings.bounds, time_limit=settings.time_limit,  # type: ignore[misc]
                                  milp=settings.bracket, attack=False, progress=settings.progress)
        status = np.array(result.status)
        certified[i, todo[np.isin(status, PROVEN)]] = True
        broken = status == "broken"
        if broken.any():
            pe.outcome[i, todo[broken]] = "milp"
            if pe.x_adv_by_eps is not None:
                pe.x_adv_by_eps[i, todo[broken]] = result.counterexample[torch.from_numpy(broken)].numpy().astype(pe.x_adv_by_eps.dtype)
            evaluation.worst_case[i] = float((pe.outcome[i] == "").mean())
        evaluation.notes.extend(n for n in result.notes if n not in evaluation.notes)
    pe.certified_by_eps = certified


def state_file(base: str | os.PathLike[str], eps: float) -> Path:
    """The suite state file of budget `eps` under `state_path=base`: BASE.eps<EPS>.npz."""
    return Path(f"{base}.eps{eps:g}.npz")


def _suite(model: nn.Module, data: Any, labels: Any, eps: list[float], suite: str | Sequence[Any], settings: EvaluationSettings,
           out: str | os.PathLike[str] | None, state_path: str | os.PathLike[str] | None) -> RobustnessEvaluation:
    bounds, norm = check_bounds(settings.bounds), check_norm(settings.norm, ("linf", "l2"))
    for e in eps:  # refuse bad settings before reading data
        check_eps(e, bounds, norm=norm)
    resolve_suite(suite, ATTACKS)
    x, y = gather(data, labels, batch_size=settings.batch_size)
    if out is not None and state_path is None:
        Path(out).mkdir(parents=True, exist_ok=True)
        state_path = Path(out) / "state"
    runs: list[SuiteEvaluation] = []
    seconds: dict[str, float] = {}
    for e in sorted(set(eps)):
        began = time.perf_counter()
        run = evaluate_suite(model, x, y, eps=e, norm=settings.norm, suite=suite, bounds=settings.bounds,
                             batch_size=settings.batch_size, seed=settings.seed, bracket=settings.bracket,
                             skip_certified=settings.skip_certified, certify=settings.certify, time_limit=settings.time_limit,
                             state_path=None if state_path is None else state_file(state_path, e), progress=settings.progress)
        for label, spent in run.seconds.items():
            seconds[label] = seconds.get(label, 0.0) + spent
        other = "clean pass, bounds and MILP" if settings.certify is not None else "clean pass"
        seconds[other] = seconds.get(other, 0.0) + time.perf_counter() - began - sum(run.seconds.values())
        if settings.carlini_checks:
            began = time.perf_counter()
            run_carlini_checks(run, model, x, y, suite=suite, bounds=settings.bounds,
                               batch_size=settings.batch_size, seed=settings.seed)
            seconds["Carlini et al. checks"] = seconds.get("Carlini et al. checks", 0.0) + time.perf_counter() - began
        runs.append(run)
    evaluation = suite_result(runs, suite if isinstance(suite, str) else "custom", y)
    evaluation.seconds = seconds
    evaluation.classes = _classes(model, x)
    _explain(evaluation, settings)
    return evaluation


def suite_result(runs: list[SuiteEvaluation], name: str, labels: torch.Tensor) -> RobustnessEvaluation:
    """The cascades at each eps as one result (per-example outcomes, checks, notes)."""
    first = runs[0]
    certified = None
    if all(r.certified is not None for r in runs):
        certified = np.stack([np.asarray(r.certified, dtype=bool) for r in runs])
    per_example = PerExample(
        [r.eps for r in runs], labels.detach().cpu().numpy().astype(np.int64), first.clean_correct.cpu().numpy().astype(bool),
        np.array([r.broken_by for r in runs], dtype=np.str_).reshape(len(runs), first.n), certified,
        np.stack([r.x_adv.detach().cpu().numpy() for r in runs]),
    )
    return RobustnessEvaluation(
        n=first.n, clean_accuracy=first.clean_accuracy, eps=[r.eps for r in runs], attacks=list(first.attacks), points=[],
        worst_case=[r.robust_accuracy for r in runs], checks=[c for r in runs for c in suite_checks(r)],
        notes=list(dict.fromkeys(n for r in runs for n in r.notes)), kind="suite", suites=runs, suite=name,
        certified=[None if r.certified is None else r.certified_accuracy for r in runs], per_example=per_example,
    )


def _explain(evaluation: RobustnessEvaluation, settings: EvaluationSettings) -> None:
    """The certified share at eps = 0 (the clean accuracy: the ball is the input itself) and, per
    eps, why the bracket's lower end is what it is."""
    method = "interval/CROWN bounds" + (" and the fixed-eps MILP" if settings.bracket else "")
    certified = list(evaluation.certified) or [None] * len(evaluation.eps)
    if evaluation.per_example is not None and evaluation.per_example.certified_by_eps is not None:
        certified = [float(row.mean()) for row in evaluation.per_example.certified_by_eps]
    reasons = []
    for i, e in enumerate(evaluation.eps):
        if e == 0:
            certified[i] = evaluation.clean_accuracy
            reasons.append("eps = 0: the ball is the input itself, so robust accuracy is the clean accuracy (exact)")
        elif settings.certify is None:
            reasons.append("no verifier ran, so the lower end is 0: pass EvaluationSettings(certify=advlab.exact.certify) "
                           "(`--bracket` on the command line) for a proven lower end")
        elif evaluation.kind == "suite" and not (settings.bracket or settings.skip_certified):
            certified[i] = None
            reasons.append("a suite runs the verifier only with bracket=True or skip_certified=True (`--bracket`), so the lower end is 0")
        elif not certified[i]:
            reasons.append(f"the verifier ({method}) proved no point robust at eps={e:g}, so the lower end is 0")
        else:
            reasons.append(f"lower end proven by {method}; upper end: points no attack broke")
    evaluation.certified = certified
    evaluation.bracket_reasons = reasons
