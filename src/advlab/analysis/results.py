"""The result types of a robustness evaluation, shared by the evaluation that fills them in
(`advlab.analysis.robustness`, `advlab.analysis.streamed`, `advlab.analysis.entry`), the
gradient-masking checks that read them (`advlab.analysis.masking`) and the reports; the typed
settings of `advlab.evaluate_robustness`; the confidence interval every report states.

Clopper-Pearson interval of k successes in n trials at level 1 - a:
[B(a/2; k, n-k+1), B(1-a/2; k+1, n-k)] with B(q; a, b) the beta quantile (scipy.special.betaincinv(a, b, q)) (0 below when k = 0, 1 above
when k = n); it covers the true rate with probability at least 1 - a for every rate.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.special import betaincinv
from torch import nn

from advlab.analysis.evaluation import SuiteEvaluation
from advlab.errors import UnknownNameError
from advlab.io import write_text_atomic

CONFIDENCE = 0.95  # the level of every interval in results and reports


def clopper_pearson(successes: int, n: int, level: float = CONFIDENCE) -> tuple[float, float]:
    """The exact (Clopper-Pearson) two-sided interval for a binomial rate (module docstring)."""
    alpha = 1.0 - level
    low = 0.0 if successes <= 0 else float(betaincinv(successes, n - successes + 1, alpha / 2))
    high = 1.0 if successes >= n else float(betaincinv(successes + 1, n - successes, 1 - alpha / 2))
    return low, high


@dataclass(frozen=True)
class EvaluationSettings:
    """How `evaluate_robustness` runs; every field has a default.

    attacks / attack_params: the fixed-budget attacks of an eps grid and their extra constructor
    keywords (default fgsm and pgd; pgd 20 steps, 2 restarts, early exit); not with a suite.
    bounds: the input box. batch_size: examples per model call (and per stored batch when
    streaming). seed: every random draw is a function of (seed, example index).
    large_eps / tolerance: the gradient-masking checks of a grid (default large_eps: the box width).
    source_model / source_name: an undefended model to transfer grid attacks from.
    norm: the threat model of a suite ("linf" or "l2").
    certify: the verifier of the bracket's lower end (`advlab.exact.certify`); without it the
    bracket is [0, attacked] and `bracket_reason` says so. bracket: also run the fixed-eps MILP
    on the points the bounds leave open (else bounds only). skip_certified: a suite attacks only
    the points the bounds leave open. time_limit: MILP seconds per point.
    keep_adversarial: keep a grid's adversarial inputs in memory (E x N inputs) for `per_example.x_adv`.
    carlini_checks: a suite also runs the checks of Carlini et al. 2019 that need runs of their own
    (`advlab.analysis.carlini.run_carlini_checks`: loss convergence, a doubled budget, unbounded
    eps, black-box; the surrogate transfer check needs `run_carlini_checks(..., surrogate=)`) on up
    to 20 points it left robust; off, those checks are reported as skipped.
    progress: progress bars (on a terminal).
    """

    attacks: Sequence[str] | None = None
    attack_params: Mapping[str, Mapping[str, Any]] | None = None
    bounds: tuple[float, float] = (0.0, 1.0)
    batch_size: int = 500
    seed: int = 0
    large_eps: float | None = None
    tolerance: float = 0.01
    source_model: nn.Module | None = None
    source_name: str = "source"
    norm: str = "linf"
    certify: Callable[..., Any] | None = None
    bracket: bool = False
    skip_certified: bool = False
    time_limit: float = 120.0
    keep_adversarial: bool = True
    carlini_checks: bool = False
    progress: bool = False


@dataclass
class MaskingCheck:
    name: str
    status: str  # "pass", "fail" or "skipped"
    detail: str


@dataclass
class AttackPoint:
    """One attack at one eps."""

    attack: str
    eps: float
    accuracy: float  # clean and adversarial input both classified correctly
    success_rate: float
    mean_confidence_on_errors: float  # over the misclassified adversarial examples (nan if none)
    seconds: float
    params: dict[str, Any]
    source: str | None = None  # crafted on this other model (a transfer attack), or None

    @property
    def error(self) -> float:
        return 1.0 - self.accuracy


@dataclass
class RobustnessEvaluation:
    """The result of `evaluate_robustness`: accuracy of one model under attack at each eps.

    kind "grid": each attack of `attacks` run alone at each eps (`points`, attack-major), with the
    gradient-masking checks. kind "suite": a suite's cascade at each eps (`suites`, one
    `SuiteEvaluation` per eps, `points` empty). Both: `worst_case` (right under every attack),
    the bracket [certified, attacked] and why, per-example outcomes, seconds by part."""

    n: int
    clean_accuracy: float
    eps: list[float]
    attacks: list[str]
    points: list[AttackPoint]  # white-box, attack-major (grid)
    worst_case: list[float]  # per eps: right under every attack
    transfer: list[AttackPoint] = field(default_factory=list)
    checks: list[MaskingCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kind: str = "grid"
    suites: list[SuiteEvaluation] = field(default_factory=list)  # per eps (suite)
    suite: str | None = None  # the suite's name (suite)
    certified: list[float | None] = field(default_factory=list)  # per eps: proven share; None: no verifier ran
    bracket_reasons: list[str] = field(default_factory=list)  # per eps
    per_example: PerExample | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # by part, "total" the whole evaluation
    classes: int | None = None  # width of the model's output (chance = 1 / classes)

    def point(self, attack: str, eps: float) -> AttackPoint:
        for p in self.points:
            if p.attack == attack and math.isclose(p.eps, eps, abs_tol=1e-12):
                return p
        raise UnknownNameError(f"no result for attack {attack!r} at eps={eps}")

    def curve(self, attack: str) -> list[float]:
        """Accuracy at each eps under `attack` alone (grid) or after it in the cascade (suite)."""
        if self.kind == "suite":
            return [s.after[attack] for s in self.suites]
        return [self.point(attack, e).accuracy for e in self.eps]

    @property
    def flagged(self) -> list[MaskingCheck]:
        return [c for c in self.checks if c.status == "fail"]

    def _one(self, values: list[Any]) -> Any:
        return values[0] if len(values) == 1 else values

    @property
    def robust_accuracy(self) -> float | list[float]:
        """Right under every attack (an upper bound on the true robust accuracy): a float for one eps, else per eps."""
        return self._one(list(self.worst_case))

    @property
    def brackets(self) -> list[tuple[float, float]]:
        """Per eps: (certified lower bound, attacked upper bound); 0 below where no verifier ran."""
        return [(c or 0.0, w) for c, w in zip(self.certified or [None] * len(self.eps), self.worst_case)]

    @property
    def bracket(self) -> tuple[float, float] | list[tuple[float, float]]:
        return self._one(self.brackets)

    @property
    def bracket_reason(self) -> str | list[str]:
        """Why the bracket's lower end is what it is (per eps when several)."""
        return self._one(list(self.bracket_reasons))

    @property
    def chance(self) -> float | None:
        return None if not self.classes else 1.0 / self.classes

    @property
    def near_chance(self) -> bool:
        """Clean accuracy within 5 points of chance: the model may be untrained or fed the wrong data."""
        return self.chance is not None and self.clean_accuracy <= self.chance + 0.05

    def interval(self, accuracy: float) -> tuple[float, float]:
        """The 95% Clopper-Pearson interval of an accuracy measured on the n examples."""
        return clopper_pearson(round(accuracy * self.n), self.n)

    def warnings(self) -> list[str]:
        """What a reader must see before the numbers."""
        found = []
        if self.near_chance and self.chance is not None:
            found.append(f"clean accuracy {100 * self.clean_accuracy:.1f}% is within 5 points of chance "
                         f"({100 * self.chance:.1f}% for {self.classes} classes): is the model trained and fed its own data?")
        if self.flagged:
            found.append(f"{len(self.flagged)} gradient-masking check(s) flagged: the accuracies may overstate robustness")
        return found

    def summary(self) -> str:
        """A short text table: per eps, robust accuracy with its 95% interval and the bracket."""
        low, high = self.interval(self.clean_accuracy)
        lines = [f"{self.n} examples, clean accuracy {100 * self.clean_accuracy:.2f}% "
                 f"(95% CI {100 * low:.1f}-{100 * high:.1f}%); {self.kind}: {', '.join(self.attacks)}",
                 f"{'eps':>8}  {'robust':>8}  {'95% CI':>13}  {'bracket':>17}"]
        for e, accuracy, (lower, upper) in zip(self.eps, self.worst_case, self.brackets):
            ci = self.interval(accuracy)
            lines.append(f"{e:>8.4g}  {100 * accuracy:>7.2f}%  {100 * ci[0]:>5.1f}-{100 * ci[1]:>5.1f}%  "
                         f"[{100 * lower:>6.2f}%, {100 * upper:>6.2f}%]")
        lines += [f"bracket: {reason}" for reason in dict.fromkeys(self.bracket_reasons)]
        lines += [f"warning: {w}" for w in self.warnings()]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "suite": self.suite,
            "n": self.n,
            "classes": self.classes,
            "clean_accuracy": self.clean_accuracy,
            "clean_accuracy_ci95": list(self.interval(self.clean_accuracy)),
            "eps": self.eps,
            "attacks": self.attacks,
            "robust_accuracy": self.worst_case,
            "robust_accuracy_ci95": [list(self.interval(a)) for a in self.worst_case],
            "bracket": [list(b) for b in self.brackets],
            "bracket_reason": self.bracket_reasons,
            "points": [asdict(p) for p in self.points],
            "worst_case": self.worst_case,
            "transfer": [asdict(p) for p in self.transfer],
            "checks": [asdict(c) for c in self.checks],
            "suites": [s.to_dict() for s in self.suites],
            "seconds": self.seconds,
            "warnings": self.warnings(),
            "notes": self.notes,
        }

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The numbers as JSON (per-example outcomes included, adversarial points not); written
        atomically to `path` when given."""
        data = self.to_dict()
        if self.per_example is not None:
            pe = self.per_example
            data["per_example"] = {"label": pe.labels.tolist(), "clean_correct": pe.clean_correct.tolist(),
                                   "broken_by": [[b or None for b in row] for row in pe.outcome.tolist()]}
            if pe.certified_by_eps is not None:
                data["per_example"]["certified"] = pe.certified_by_eps.tolist()
        text = json.dumps(data, indent=2) + "\n"
        if path is not None:
            write_text_atomic(path, text)
        return text

@dataclass
class PerExample:
    """Per example (N) and eps (E): whether the model is right on the clean input, whether it is
    still right after every attack, who broke it ("clean": misclassified already, an attack's
    name, "milp": the MILP found a counterexample; None: robust), whether a verifier proved it
    robust, and the adversarial point (the breaking input where broken, the clean input elsewhere).

    The stored arrays keep an eps axis; the properties drop it when there is one eps."""

    eps: list[float]
    labels: np.ndarray  # (N,) int64
    clean_correct: np.ndarray  # (N,) bool
    outcome: np.ndarray  # (E, N) str: "" robust, "clean", an attack's name, "milp"
    certified_by_eps: np.ndarray | None = None  # (E, N) bool, None when no verifier ran
    x_adv_by_eps: np.ndarray | None = None  # (E, N, ...) in the inputs' dtype, None when not kept

    def _one(self, array: np.ndarray) -> np.ndarray:
        return array[0] if len(self.eps) == 1 else array

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def robust(self) -> np.ndarray:
        """(N,) bool for one eps, else (E, N)."""
        return self._one(self.outcome == "")

    @property
    def broken_by(self) -> list[str | None] | list[list[str | None]]:
        rows = [[label or None for label in row.tolist()] for row in self.outcome]
        return rows[0] if len(self.eps) == 1 else rows

    @property
    def certified(self) -> np.ndarray | None:
        return None if self.certified_by_eps is None else self._one(self.certified_by_eps)

    @property
    def x_adv(self) -> np.ndarray | None:
        return None if self.x_adv_by_eps is None else self._one(self.x_adv_by_eps)

    def columns(self) -> dict[str, np.ndarray]:
        """The arrays of `examples.npz` (docs/guide/evaluation.md): index, label, clean_correct,
        eps, robust, broken_by, certified (when a verifier ran), x_adv (when kept)."""
        columns = {
            "index": np.arange(self.n, dtype=np.int64), "label": self.labels.astype(np.int64),
            "clean_correct": self.clean_correct.astype(bool), "eps": np.asarray(self.eps, dtype=np.float64),
            "robust": self.outcome == "", "broken_by": self.outcome.astype(np.str_),
        }
        if self.certified_by_eps is not None:
            columns["certified"] = self.certified_by_eps.astype(bool)
        if self.x_adv_by_eps is not None:
            columns["x_adv"] = self.x_adv_by_eps
        return columns


def first_breaker(eps: Sequence[float], clean_correct: np.ndarray, attacks: Sequence[str],
                  robust: Mapping[tuple[str, float], np.ndarray]) -> np.ndarray:
    """(E, N) outcome codes of a grid: "clean" where the clean input is misclassified, else the
    first attack (in `attacks` order) that fooled the model at that eps, else "" (robust)."""
    width = max([5, *(len(a) for a in attacks)])
    outcome = np.full((len(eps), len(clean_correct)), "", dtype=f"<U{width}")
    for i, e in enumerate(eps):
        for attack in reversed(attacks):  # the first attack's label is written last
            outcome[i][~robust[(attack, e)]] = attack
        outcome[i][~clean_correct] = "clean"
    return outcome
