"""`advlab explore`: one self-contained HTML page that teaches the linear argument.

Goodfellow et al. 2014, Sec. 3: for a linear score w.x + b, the perturbation eta = eps * sign(w)
is the maximiser of w.eta over ||eta||_inf <= eps, and it moves the score by exactly
eps * ||w||_1, which grows with the dimension. The page shows (1) the worked example, (2) Fig. 2
live: logistic regression on 3 vs 7 with its test error under the worst-case L-inf perturbation
(box-clipped) computed exactly in the page for every eps, and (3) Szegedy et al. 2013, Sec. 4.1:
the targeted L-BFGS search over c for a few digits beside the exact minimal L2 perturbation
(`advlab.exact`). Everything (scripts, styles, data) is inlined: the file opens from disk with no
network. The JavaScript in `explore_assets/` is the page's own; no external library.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from advlab.attacks import FGSM, LBFGS
from advlab.attacks.search import WeightSearch
from advlab.data import Dataset, Splits
from advlab.errors import InputError
from advlab.exact import minimal_perturbation
from advlab.experiments.goodfellow import FIG2_CLASSES, goodfellow_fig2
from advlab.io import write_text_atomic
from advlab.models.linear import linear_weights
from advlab.progress import progress_bar

WORKED_EXAMPLE = {"x": [-2.0, 2.0, 1.0, -3.0, 1.0], "w": [3.0, 2.0, -1.0, 1.0, 4.0], "b": 0.0}
ASSETS = ("common.js", "worked.js", "fig2.js", "szegedy.js")
PAGE_NAME = "explore.html"
# the smooth-margin loss's temperature in panel 3 (1 would be the paper's cross-entropy; see advlab.attacks.lbfgs)
LBFGS_TEMPERATURE = 0.01


@dataclass(frozen=True)
class CStep:
    """One solve of the c search: the c tried, whether its minimiser is adversarial, its L2 norm."""

    c: float
    success: bool
    distance: float | None  # None where the attack returned x unchanged (not adversarial)


@dataclass(frozen=True)
class CTrace:
    """Szegedy's L-BFGS on one digit: every c tried, the smallest perturbation, the exact one."""

    index: int
    label: int
    target: int
    steps: list[CStep]
    lbfgs_r: torch.Tensor
    exact_r: torch.Tensor

    @property
    def lbfgs_distance(self) -> float:
        return float(self.lbfgs_r.norm())

    @property
    def exact_distance(self) -> float:
        return float(self.exact_r.norm())


def binary_linear(model: nn.Module) -> tuple[torch.Tensor, float]:
    """(w, b) of a one-logit linear model (logistic regression), in float64."""
    weight, bias = linear_weights(model)
    if weight.shape[0] != 1:
        raise InputError(f"explore needs logistic regression (one logit); this model has {weight.shape[0]} outputs")
    return weight[0].double().cpu(), float(bias[0])


def worst_case_error(w: torch.Tensor, b: float, x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    """Test error under the exact worst case in the L-inf ball and the box [0, 1].

    Label 1 is predicted where w.x + b > 0. The logit is linear, so the worst x' in the ball
    intersected with the box is clip(x + eps * s) with s = sign(w) for label 0 and -sign(w) for
    label 1, coordinate by coordinate (Goodfellow et al. 2014, Sec. 3). Computed in float64: the
    page computes the same thing in JavaScript.
    """
    x, w = x.flatten(1).double(), w.double()
    direction = torch.where(y.unsqueeze(1) == 1, -1.0, 1.0) * torch.sign(w)
    logit = (x + eps * direction).clamp(0.0, 1.0) @ w + b
    return float(((logit > 0).long() != y).double().mean())


def c_search_traces(
    model: nn.Module, test: Dataset, indices: list[int], *, c: float = 1.0, steps: int = 20, progress: bool = False
) -> list[CTrace]:
    """Targeted L-BFGS (Szegedy et al. 2013, Sec. 4.1) on a few binary test digits, each c recorded.

    The search is the attack's own (`WeightSearch`: multiply or divide c by 10 until a success
    and a failure are seen, then bisect in log c); each c is one run of the public `LBFGS` with
    the search pinned to that c (`search_steps=1`), which returns the minimiser when it is
    adversarial (its distance is recorded) and x unchanged otherwise. The target is the other
    class; the exact minimal L2 perturbation comes from `advlab.exact.minimal_perturbation`.
    """
    x, y = test.images[indices], test.labels[indices]
    targets = 1 - y
    search = WeightSearch(torch.full((len(y),), float(c), dtype=torch.float64))
    best = x.clone()
    best_distance = [math.inf] * len(y)
    trace: list[list[CStep]] = [[] for _ in range(len(y))]
    for _ in progress_bar(steps, "L-BFGS c search", enabled=progress, unit="step", iterable=range(steps)):
        settled = search.settled()
        if bool(settled.all()):
            break
        success = torch.zeros(len(y), dtype=torch.bool)
        for i in range(len(y)):  # a handful of showcase digits, each searching its own c
            if settled[i]:
                continue
            weight = float(search.weight[i])
            attack = LBFGS(model, c=weight, search_steps=1, temperature=LBFGS_TEMPERATURE)
            result = attack(x[i : i + 1], y[i : i + 1], targets=targets[i : i + 1])
            success[i] = bool(result.success[0])
            distance = float(result.l2[0]) if success[i] else None
            trace[i].append(CStep(weight, bool(success[i]), distance))
            if distance is not None and distance < best_distance[i]:
                best[i], best_distance[i] = result.x_adv[0], distance
        search.update(success)
    exact = minimal_perturbation(model, x, y, norm="l2", targets=targets)
    return [
        CTrace(index, int(y[i]), int(targets[i]), trace[i], (best[i] - x[i]).flatten(), (exact.x_adv[i] - x[i]).flatten().float())
        for i, index in enumerate(indices)
    ]


def explorer_payload(
    model: nn.Module, splits: Splits, classes: Sequence[int], *, eps: float = 0.25, progress: bool = False
) -> dict[str, Any]:
    """The page's data for a logistic regression `model` trained on `classes` (label 1 = classes[1])."""
    if len(classes) != 2:
        raise InputError(f"explore needs a model of two classes (like 3,7); this one has classes {list(classes)}")
    binary_linear(model)
    test = splits.select_classes(classes).test
    fgsm = FGSM(model, eps=eps)(test.images, test.labels)
    traces = c_search_traces(model, test, showcase_indices(model, test), progress=progress)
    fgsm_error = float((~fgsm.adv_correct).double().mean())
    return build_payload(model, test, classes=(classes[0], classes[1]), source=splits.source,
                         fgsm_error=fgsm_error, traces=traces, eps=eps)


def fig2_explorer_payload(splits: Splits, *, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Train Fig. 2's model exactly as `advlab reproduce goodfellow-fig2` does, then build the page's data."""
    experiment = goodfellow_fig2(splits, eps=0.25, seed=seed, progress=progress)
    return explorer_payload(experiment.trained, splits, FIG2_CLASSES, progress=progress)


def showcase_indices(model: nn.Module, test: Dataset, per_class: int = 2) -> list[int]:
    """The first `per_class` correctly classified test digits of each of the two classes."""
    w, b = binary_linear(model)
    predicted = (test.images.flatten(1).double() @ w + b > 0).long()
    picked: list[int] = []
    for label in (0, 1):
        hits = ((test.labels == label) & (predicted == label)).nonzero().flatten()
        picked += hits[:per_class].tolist()
    if len(picked) < 2 * per_class:
        raise InputError(f"explore needs {per_class} correctly classified test images of each class")
    return picked


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def build_payload(
    model: nn.Module, test: Dataset, *, classes: tuple[int, int], source: str, fgsm_error: float,
    traces: list[CTrace], eps: float = 0.25,
) -> dict[str, Any]:
    """Everything the page shows, JSON-ready: pixels as uint8 (MNIST is k/255), weights as float32."""
    w, b = binary_linear(model)
    pixels = (test.images.flatten(1).double() * 255).round()
    if not torch.equal((pixels.float() / 255).view_as(test.images), test.images.float()):
        raise InputError("explore embeds pixels as multiples of 1/255 (MNIST); these images are not")
    return {
        "worked": WORKED_EXAMPLE,
        "fig2": {
            "classes": list(classes),
            "source": source,
            "n": len(test),
            "weight": _b64(w.numpy(), "<f8"),
            "bias": b,
            "images": _b64(pixels.numpy(), "u1"),
            "labels": test.labels.tolist(),
            "eps": eps,
            "fgsm_error": fgsm_error,
            "fgsm_wrong": round(fgsm_error * len(test)),
        },
        "szegedy": [
            {
                "index": t.index, "label": t.label, "target": t.target,
                "image": _b64(pixels[t.index].numpy(), "u1"),
                "steps": [{"c": s.c, "success": s.success, "distance": s.distance} for s in t.steps],
                "lbfgs": {"distance": t.lbfgs_distance, "r": _b64(t.lbfgs_r.numpy(), "<f4")},
                "exact": {"distance": t.exact_distance, "r": _b64(t.exact_r.numpy(), "<f4")},
            }
            for t in traces
        ],
    }


def render_page(payload: dict[str, Any], *, command: str = "advlab explore") -> str:
    """The page: the template with the styles, the scripts and the data inlined."""
    assets = resources.files("advlab.report").joinpath("explore_assets")
    template = assets.joinpath("page.html").read_text(encoding="utf-8")
    style = assets.joinpath("page.css").read_text(encoding="utf-8")
    script = "\n".join(assets.joinpath(name).read_text(encoding="utf-8") for name in ASSETS)
    # JSON inside <script>: "</" and "<!--" must not appear literally
    data = json.dumps(payload, separators=(",", ":")).replace("<", "\\u003c")
    values = {"STYLE": style, "SCRIPT": script, "DATA": data, "COMMAND": html.escape(command),
              "TEMPERATURE": f"{LBFGS_TEMPERATURE:g}"}
    return re.sub(r"/\*(STYLE|SCRIPT|DATA|COMMAND|TEMPERATURE)\*/", lambda match: values[match.group(1)], template)


def write_page(payload: dict[str, Any], out_dir: str | Path, *, command: str = "advlab explore") -> Path:
    """Write OUT_DIR/explore.html atomically and return its path."""
    path = Path(out_dir) / PAGE_NAME
    write_text_atomic(path, render_page(payload, command=command))
    return path
