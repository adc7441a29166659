"""The runs behind the checks of Carlini et al. 2019, "On evaluating adversarial robustness"
(Sec. 4-5), that a suite evaluation alone cannot answer; the checks themselves are pure functions
of the evaluation (`advlab.analysis.masking.suite_checks`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from advlab.analysis.evaluation import SuiteEvaluation, Witnesses, evaluate_suite
from advlab.attacks import ATTACKS, APGD, Square
from advlab.attacks.adaptive import TracedAPGD
from advlab.attacks.suites import DEFAULT_SUITE, SuiteAttack, resolve_suite
from advlab.models.inference import frozen_eval
from advlab.validation import Bounds, check_bounds, check_count, check_images, check_labels


def run_carlini_checks(evaluation: SuiteEvaluation, model: nn.Module, images: Any, labels: Any, *,
                       suite: str | Sequence[SuiteAttack | Mapping[str, Any]] = DEFAULT_SUITE, sample: int = 20,
                       surrogate: nn.Module | None = None, bounds: Bounds = (0.0, 1.0), batch_size: int = 500,
                       seed: int = 0) -> dict[str, Any]:
    """The runs behind the checks of Carlini et al. 2019 (Sec. 4-5) that a suite alone cannot answer,
    on the first `sample` points the suite left robust (S); stored in `evaluation.carlini`, read by
    `advlab.analysis.masking.suite_checks`. Every break counts only with a float64 witness.

    - loss_curve: APGD-T's mean best loss after each of 100 iterations on S (does it converge);
    - doubled: the suite with steps, queries and restarts (flat_restarts too) doubled, on S (points it breaks);
    - unbounded: the suite at eps = the box's width (L-inf) on S: accuracy must reach 0;
    - transfer (with a surrogate): APGD-CE crafted on the surrogate at eps, points of S it breaks;
    - black_box: Square (5,000 queries) on S, points it breaks."""
    bounds = check_bounds(bounds)
    x, y = check_images("images", images, bounds), check_labels("labels", labels, evaluation.n)
    entries, _ = resolve_suite(suite, ATTACKS, norm=evaluation.norm)
    rows = torch.from_numpy(np.flatnonzero(evaluation.robust.numpy())[: check_count("sample", sample)])
    out: dict[str, Any] = {"sample": len(rows)}
    if not len(rows):
        evaluation.carlini = out
        return out
    xs, ys, eps, norm = x[rows], y[rows], evaluation.eps, evaluation.norm
    witnesses = Witnesses(model, xs, ys, eps, norm, bounds, batch_size)
    with frozen_eval(model):
        device = next(iter(model.parameters()), xs).device
        traced = TracedAPGD(model, eps=eps, norm=norm, bounds=bounds, seed=seed, progress=False)
        out["loss_curve"] = traced.loss_curve(xs.to(device), ys.to(device), rows)
    doubled = [SuiteAttack(e.label, e.attack, {k: 2 * v if k in ("steps", "queries", "restarts", "flat_restarts") else v for k, v in e.params.items()})
               for e in entries]
    again = evaluate_suite(model, xs, ys, eps=eps, norm=norm, suite=doubled, bounds=bounds, batch_size=batch_size, seed=seed)
    out["doubled"] = {"points": len(rows), "broken": int((~again.robust).sum())}
    if norm == "linf":
        wide = evaluate_suite(model, xs, ys, eps=bounds[1] - bounds[0], norm=norm, suite=entries, bounds=bounds,
                              batch_size=batch_size, seed=seed)
        out["unbounded"] = {"eps": bounds[1] - bounds[0], "accuracy": wide.robust_accuracy}
    index = np.arange(len(rows))
    if surrogate is not None:
        crafted = APGD(surrogate, eps=eps, norm=norm, bounds=bounds, seed=seed, batch_size=batch_size, progress=False)(xs, ys)
        out["transfer"] = {"points": len(rows), "broken": int(witnesses.check(index, crafted.x_adv)[0].sum()),
                           "source": type(surrogate).__name__}
    square = Square(model, eps=eps, norm=norm, bounds=bounds, seed=seed, batch_size=batch_size, progress=False)(xs, ys)
    out["black_box"] = {"points": len(rows), "broken": int(witnesses.check(index, square.x_adv)[0].sum())}
    evaluation.carlini = out
    return out
