"""The result types of a robustness evaluation, shared by the evaluation that fills them in
(`advlab.analysis.robustness`, `advlab.analysis.streamed`) and the gradient-masking checks that
read them (`advlab.analysis.masking`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from advlab.errors import UnknownNameError


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
    """Accuracy of one model under each attack at each eps, with the gradient-masking checks."""

    n: int
    clean_accuracy: float
    eps: list[float]
    attacks: list[str]
    points: list[AttackPoint]  # white-box, attack-major
    worst_case: list[float]  # per eps: right under every attack
    transfer: list[AttackPoint] = field(default_factory=list)
    checks: list[MaskingCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def point(self, attack: str, eps: float) -> AttackPoint:
        for p in self.points:
            if p.attack == attack and math.isclose(p.eps, eps, abs_tol=1e-12):
                return p
        raise UnknownNameError(f"no result for attack {attack!r} at eps={eps}")

    def curve(self, attack: str) -> list[float]:
        return [self.point(attack, e).accuracy for e in self.eps]

    @property
    def flagged(self) -> list[MaskingCheck]:
        return [c for c in self.checks if c.status == "fail"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "clean_accuracy": self.clean_accuracy,
            "eps": self.eps,
            "attacks": self.attacks,
            "points": [asdict(p) for p in self.points],
            "worst_case": self.worst_case,
            "transfer": [asdict(p) for p in self.transfer],
            "checks": [asdict(c) for c in self.checks],
            "notes": self.notes,
        }
