"""Analyses of trained models: robustness curves and gradient-masking checks."""

from advlab.analysis.masking import MaskingCheck, masking_checks
from advlab.analysis.robustness import (
    DEFAULT_EPS,
    AttackPoint,
    RobustnessEvaluation,
    default_attacks,
    evaluate_robustness,
    parse_eps,
)

__all__ = [
    "DEFAULT_EPS",
    "AttackPoint",
    "MaskingCheck",
    "RobustnessEvaluation",
    "default_attacks",
    "evaluate_robustness",
    "masking_checks",
    "parse_eps",
]
