"""The explorer's computations (Goodfellow et al. 2014, Sec. 3; Szegedy et al. 2013, Sec. 4.1).

For a linear score w.x + b, eta = eps * sign(w) maximises w.eta over ||eta||_inf <= eps and moves
the score by exactly eps * ||w||_1. `explorer_data` measures, for a logistic regression on two
classes: the FGSM error on the test split, the exact worst-case error in the L-inf ball and the
box (`worst_case_error`, which the page recomputes for every eps), and Szegedy's targeted L-BFGS
search over c on a few digits beside the exact minimal L2 perturbation. `advlab.report.explore`
only formats this into the page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from advlab.attacks import FGSM, LBFGS
from advlab.attacks.search import WeightSearch
from advlab.data import Dataset, Splits
from advlab.errors import InputError
from advlab.exact import minimal_perturbation
from advlab.experiments.goodfellow import FIG2_CLASSES, goodfellow_fig2
from advlab.models.linear import linear_weights
from advlab.progress import progress_bar

WORKED_EXAMPLE = {"x": [-2.0, 2.0, 1.0, -3.0, 1.0], "w": [3.0, 2.0, -1.0, 1.0, 4.0], "b": 0.0}
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


@dataclass(frozen=True)
class ExplorerData:
    """What the page shows: the model, its test split and what was measured on them."""

    model: nn.Module
    test: Dataset
    classes: tuple[int, int]
    source: str
    eps: float
    fgsm_error: float
    traces: list[CTrace]


def explorer_data(
    model: nn.Module, splits: Splits, classes: Sequence[int], *, eps: float = 0.25, progress: bool = False
) -> ExplorerData:
    """Measure a logistic regression `model` trained on `classes` (label 1 = classes[1])."""
    if len(classes) != 2:
        raise InputError(f"explore needs a model of two classes (like 3,7); this one has classes {list(classes)}")
    binary_linear(model)
    test = splits.select_classes(classes).test
    fgsm = FGSM(model, eps=eps)(test.images, test.labels)
    traces = c_search_traces(model, test, showcase_indices(model, test), progress=progress)
    return ExplorerData(model, test, (classes[0], classes[1]), splits.source, eps,
                        float((~fgsm.adv_correct).double().mean()), traces)


def fig2_explorer_data(splits: Splits, *, seed: int = 0, progress: bool = False) -> ExplorerData:
    """Train Fig. 2's model exactly as `advlab reproduce goodfellow-fig2` does, then measure it."""
    experiment = goodfellow_fig2(splits, eps=0.25, seed=seed, progress=progress)
    return explorer_data(experiment.trained, splits, FIG2_CLASSES, progress=progress)
