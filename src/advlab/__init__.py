"""advlab: craft, measure and defend against adversarial examples for PyTorch models."""

from advlab.analysis import EvaluationSettings, RobustnessEvaluation, evaluate_robustness
from advlab.attacks import FGM, FGSM, Attack, AttackResult, make_attack
from advlab.errors import AdvlabError, CheckpointError, DataError, InputError, SolverError, UnknownNameError

__version__ = "0.1.0"

__all__ = [
    "FGM",
    "FGSM",
    "AdvlabError",
    "Attack",
    "AttackResult",
    "CheckpointError",
    "DataError",
    "EvaluationSettings",
    "InputError",
    "RobustnessEvaluation",
    "SolverError",
    "UnknownNameError",
    "evaluate_robustness",
    "make_attack",
]
