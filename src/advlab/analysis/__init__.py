"""Analyses of trained models: robustness curves and gradient-masking checks; the measurements of
Szegedy et al. 2013 (distortion and transfer, equal-size noise, units vs directions, Lipschitz bounds)."""

from advlab.analysis.lipschitz import LayerBound, conv2d_bound, layer_bounds, network_bound, observed_ratio
from advlab.analysis.masking import MaskingCheck, masking_checks
from advlab.analysis.noise import equal_norm_noise, gaussian_noise, perturb_to_norm
from advlab.analysis.results import AttackPoint, EvaluationSettings, PerExample, RobustnessEvaluation, clopper_pearson
from advlab.analysis.robustness import DEFAULT_EPS, default_attacks, grid_evaluation, parse_eps
from advlab.analysis.evaluation import SuiteEvaluation, evaluate_suite
from advlab.analysis.entry import evaluate_robustness
from advlab.analysis.transfer import distortion, error_rate_on, transfer_table
from advlab.analysis.units import UnitsVsDirections, layer_activations, units_vs_directions

__all__ = [
    "DEFAULT_EPS",
    "AttackPoint",
    "EvaluationSettings",
    "LayerBound",
    "MaskingCheck",
    "PerExample",
    "RobustnessEvaluation",
    "SuiteEvaluation",
    "UnitsVsDirections",
    "clopper_pearson",
    "conv2d_bound",
    "default_attacks",
    "distortion",
    "equal_norm_noise",
    "error_rate_on",
    "evaluate_robustness",
    "evaluate_suite",
    "gaussian_noise",
    "grid_evaluation",
    "layer_activations",
    "layer_bounds",
    "masking_checks",
    "network_bound",
    "observed_ratio",
    "parse_eps",
    "perturb_to_norm",
    "transfer_table",
    "units_vs_directions",
]
