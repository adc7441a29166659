"""`evaluate_robustness` over a stream of batches, in memory bounded by the batch size.

Every batch gets the same work as the in-memory evaluation (each attack at each eps, the
transfer attacks, the large-eps point of the masking check); per-example outcomes (clean and
adversarial correctness, confidence) go to an `advlab.attacks.stream.ResultStore`, which a
killed run resumes from. The evaluation is then assembled from those columns, with the same
numbers `evaluate_robustness` gives for the same examples in one tensor: attacks see each
example's global index, so their random draws do not depend on how the stream is cut.
Under a torch.distributed process group the batches are sharded over the ranks by index and
rank 0 assembles the one evaluation (`advlab.data.shard`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from advlab.analysis.masking import large_eps_attack, masking_checks
from advlab.analysis.robustness import (
    DEFAULT_EPS,
    PREFERRED_ATTACKS,
    TRANSFER_PARAMS,
    AttackPoint,
    RobustnessEvaluation,
    evaluation_plan,
)
from advlab.analysis.results import PerExample, first_breaker
from advlab.attacks import ATTACKS, make_attack
from advlab.attacks.stream import ResultStore, run_stream
from advlab.data.shard import Shard, current_shard
from advlab.data.stream import Batch
from advlab.errors import InputError
from advlab.models.inference import logits
from advlab.validation import Bounds, check_bounds, check_eps

Job = tuple[str, float, bool]  # (attack, eps, transfer)


def _tag(job: Job) -> str:
    attack, eps, transfer = job
    return f"{attack}@{eps!r}" + ("@transfer" if transfer else "")


def stream_robustness(
    model: nn.Module,
    batches: Iterable[Batch],
    out: str | os.PathLike[str],
    *,
    attacks: Sequence[str] | None = None,
    eps: Sequence[float] = DEFAULT_EPS,
    attack_params: Mapping[str, Mapping[str, Any]] | None = None,
    source_model: nn.Module | None = None,
    source_name: str = "source",
    bounds: Bounds = (0.0, 1.0),
    batch_size: int = 500,
    seed: int = 0,
    large_eps: float | None = None,
    tolerance: float = 0.01,
    progress: bool = True,
    shard: Shard | None = None,
) -> RobustnessEvaluation | None:
    """The robustness evaluation of `model` on the stream `batches`, per-example outcomes kept
    in the store at `out` (resumed when present). Arguments as `evaluate_robustness`'s.
    Returns the evaluation on rank 0 and None on the other ranks of a process group."""
    shard = shard or current_shard()
    bounds = check_bounds(bounds)
    names, eps_list, params = evaluation_plan(attacks, eps, attack_params, bounds)
    large = bounds[1] - bounds[0] if large_eps is None else check_eps(large_eps, bounds)
    jobs: list[Job] = [(name, e, False) for name in names for e in eps_list]
    strongest = large_eps_attack(names)
    if not any(e >= large for e in eps_list):
        jobs.append((strongest, large, False))
    if source_model is not None:
        jobs += [(name, e, True) for name in names for e in eps_list if e > 0]

    crafters = {
        job: make_attack(job[0], source_model if job[2] else model, eps=job[1], bounds=bounds, batch_size=batch_size, seed=seed,
                         **{**params[job[0]], **(TRANSFER_PARAMS.get(job[0], {}) if job[2] else {})})
        for job in jobs
    }

    def work(x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor) -> tuple[dict[str, np.ndarray], float]:
        labels = y.cpu()
        clean = logits(model, x, batch_size=batch_size)
        columns = {"labels": labels.numpy(), "clean_correct": (clean.argmax(1).cpu() == labels).numpy(), "classes": np.array([clean.shape[1]])}
        seconds, x_adv = 0.0, {e: x.detach().cpu().clone() for e in eps_list}
        for job, crafter in crafters.items():
            transfer = job[2]
            result = crafter(x, y, indices=indices)
            if job[1] in x_adv and not transfer:  # the first attack that breaks a point supplies its adversarial input
                first = torch.from_numpy(columns["clean_correct"] & ~np.logical_or.reduce(
                    [~columns[f"{_tag((a, job[1], False))}:correct"] for a in names[: names.index(job[0])]] or [np.zeros(len(y), bool)]))
                hit = first & (result.adv_pred.cpu() != labels)
                x_adv[job[1]][hit] = result.x_adv.detach().cpu()[hit]
            scores = logits(model, result.x_adv, batch_size=batch_size) if transfer else result.adv_logits
            columns[f"{_tag(job)}:correct"] = (scores.argmax(1).cpu() == labels).numpy()
            columns[f"{_tag(job)}:confidence"] = scores.softmax(1).amax(1).double().cpu().numpy()
            columns[f"{_tag(job)}:seconds"] = np.array([result.seconds])
            seconds += result.seconds
        columns.update({f"x_adv@{e!r}": adv.numpy() for e, adv in x_adv.items()})
        return columns, seconds

    config = {"kind": "robustness", "columns": "x_adv", "jobs": {_tag(j): a.params() for j, a in crafters.items()},
              "source": source_name if source_model is not None else None}
    store = ResultStore(out, config)
    run_stream(batches, store, work, desc="evaluate", progress=progress, shard=shard)
    if not shard.is_root:
        return None
    return _assemble(store, {job: a.params() for job, a in crafters.items()}, names, eps_list, source_name, large, tolerance)


def _assemble(store: ResultStore, jobs: Mapping[Job, dict[str, Any]], names: list[str], eps_list: list[float],
              source_name: str, large: float, tolerance: float) -> RobustnessEvaluation:
    """The evaluation, from the per-example columns (the same arithmetic as `evaluate_robustness`)."""
    clean_correct = store.column("clean_correct").astype(bool)
    if clean_correct.size == 0:
        raise InputError("the stream held no examples")
    points: dict[Job, AttackPoint] = {}
    robust: dict[Job, np.ndarray] = {}
    for job, job_params in jobs.items():
        attack, e, transfer = job
        correct = store.column(f"{_tag(job)}:correct").astype(bool)
        confidence = store.column(f"{_tag(job)}:confidence")
        wrong = ~correct
        robust[job] = clean_correct & correct
        points[job] = AttackPoint(
            attack=attack, eps=float(e), accuracy=float(robust[job].astype(np.float64).mean()),
            success_rate=float(wrong.astype(np.float64).mean()),
            mean_confidence_on_errors=float(confidence[wrong].mean()) if wrong.any() else float("nan"),
            seconds=float(store.column(f"{_tag(job)}:seconds").sum()), params=job_params,
            source=source_name if transfer else None,
        )
    worst = [np.logical_and.reduce([robust[(name, e, False)] for name in names]) for e in eps_list]
    evaluation = RobustnessEvaluation(
        n=int(clean_correct.size), clean_accuracy=float(clean_correct.astype(np.float64).mean()), eps=eps_list, attacks=names,
        points=[points[(name, e, False)] for name in names for e in eps_list],
        worst_case=[float(w.astype(np.float64).mean()) for w in worst],
        transfer=[p for job, p in points.items() if job[2]],
        notes=[f"{name} is not registered in this build: not run" for name in PREFERRED_ATTACKS if name not in ATTACKS],
        per_example=PerExample(eps_list, store.column("labels").astype(np.int64), clean_correct,  # adversarial inputs stay in the parts
                               first_breaker(eps_list, clean_correct, names, {(a, e): robust[(a, e, False)] for a in names for e in eps_list})),
        classes=int(store.column("classes").max()),
    )
    strongest = large_eps_attack(names)
    large_point = min((p for (a, e, t), p in points.items() if a == strongest and not t and e >= large), key=lambda p: p.eps)
    evaluation.checks = masking_checks(evaluation, large_point, tolerance=tolerance)
    return evaluation

