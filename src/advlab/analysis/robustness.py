"""Robustness evaluation: accuracy under fixed-budget L-inf attacks over a range of eps.

For every attack and every eps the model counts as right on an example when it classifies both
the clean input and the attack's output correctly (the clean input lies in every eps-ball, so
at eps = 0 this is the clean accuracy). Reported per point: that robust accuracy, the attack's
success rate and, as Goodfellow et al. 2014 (Sec. 4, 6) do, the mean confidence (softmax
probability of the predicted class) on the misclassified adversarial examples. The worst case
over the attacks counts an example as robust only when no attack fools the model on it.

Every evaluation also runs the gradient-masking checks of `advlab.analysis.masking`.
"""

from __future__ import annotations

import math
from fractions import Fraction
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from advlab.analysis.masking import large_eps_attack, masking_checks
from advlab.analysis.results import AttackPoint, PerExample, RobustnessEvaluation, first_breaker
from advlab.attacks import ATTACKS, AttackResult, make_attack
from advlab.attacks.base import FixedBudgetAttack
from advlab.errors import InputError, UnknownNameError
from advlab.models.inference import logits
from advlab.progress import progress_bar
from advlab.validation import Bounds, check_bounds, check_eps, check_images, check_labels

DEFAULT_EPS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
PREFERRED_ATTACKS = ("fgsm", "pgd")  # single-step, then iterative with restarts
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {"pgd": {"steps": 20, "restarts": 2, "early_exit": True}}
# Transfer examples should be strong on their source, not stop at its decision boundary.
TRANSFER_PARAMS: dict[str, dict[str, Any]] = {"pgd": {"early_exit": False}}


def default_attacks() -> tuple[str, ...]:
    """FGSM and PGD, whichever of them are registered."""
    return tuple(name for name in PREFERRED_ATTACKS if name in ATTACKS)


def exact_number(text: str) -> Fraction:
    """'0.05', '8/255' or '1e-2' as an exact fraction (so a grid's steps add up without rounding)."""
    parts = text.strip().split("/")
    if len(parts) > 2:
        raise ValueError(f"expected a number or a fraction A/B, got {text!r}")
    try:
        return Fraction(parts[0]) / (Fraction(parts[1]) if len(parts) == 2 else 1)
    except ZeroDivisionError:
        raise ValueError(f"division by zero in {text!r}") from None


def parse_number(text: str) -> float:
    """'0.03', '8/255' or '1e-2' -> the nearest float (8/255 -> the float of 8 / 255); 'inf', 'nan' as float() reads them."""
    try:
        return float(exact_number(text))
    except ValueError:
        return float(text)  # inf and nan (checked by the caller), or the ValueError of a non-number


def parse_eps(text: str) -> list[float]:
    """'0:0.3:0.05' (start:stop:step, stop included) or '0,0.1,0.25' -> sorted distinct floats;
    every number may be a fraction ('0:8/255:1/255', '2/255,8/255'); a grid's values are
    start + i * step computed exactly, then rounded once to float."""
    try:
        if ":" in text:
            start, stop, step = (exact_number(part) for part in text.split(":"))
            if not step > 0 or stop < start:
                raise ValueError
            values = [float(start + i * step) for i in range(math.floor((stop - start) / step) + 1)]
        else:
            values = [float(exact_number(part)) for part in text.split(",") if part.strip()]
    except (ValueError, TypeError):
        raise InputError(f"eps must be START:STOP:STEP with STEP > 0 and STOP >= START, or a comma list "
                         f"(numbers or fractions like 8/255), got {text!r}") from None
    if not values:
        raise InputError(f"no eps values in {text!r}")
    return sorted(set(values))


class Runner:
    """Runs registered fixed-budget attacks at a given eps and scores them against the clean predictions."""

    def __init__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        params: Mapping[str, Mapping[str, Any]],
        bounds: Bounds,
        batch_size: int,
        seed: int,
    ) -> None:
        self.model, self.images, self.labels = model, images, labels
        self.params, self.bounds, self.batch_size, self.seed = params, bounds, batch_size, seed
        self.clean_correct = logits(model, images, batch_size=batch_size).argmax(1) == labels

    def craft(self, attack: str, eps: float, on: nn.Module | None = None) -> AttackResult:
        """The attack's result at eps, crafted on `on` (default: the evaluated model)."""
        kwargs = {"eps": eps, "bounds": self.bounds, "batch_size": self.batch_size, "seed": self.seed, **self.params.get(attack, {})}
        if on is not None:
            kwargs.update(TRANSFER_PARAMS.get(attack, {}))
        return make_attack(attack, on if on is not None else self.model, **kwargs)(self.images, self.labels)

    def run(self, attack: str, eps: float, source: tuple[str, nn.Module] | None = None) -> tuple[AttackPoint, torch.Tensor, torch.Tensor]:
        """(the point, per-example robust mask, the adversarial inputs). With a source, the examples are crafted on it."""
        result = self.craft(attack, eps, on=source[1] if source else None)
        adv_logits = result.adv_logits if source is None else logits(self.model, result.x_adv, batch_size=self.batch_size)
        adv_correct = adv_logits.argmax(1) == self.labels
        wrong = ~adv_correct
        confidence = adv_logits.softmax(1).amax(1)
        robust = self.clean_correct & adv_correct
        point = AttackPoint(
            attack=attack,
            eps=float(eps),
            accuracy=float(robust.double().mean()),
            success_rate=float(wrong.double().mean()),
            mean_confidence_on_errors=float(confidence[wrong].double().mean()) if bool(wrong.any()) else float("nan"),
            seconds=result.seconds,
            params=result.params,
            source=source[0] if source else None,
        )
        return point, robust, result.x_adv


def _check_attack(name: str) -> str:
    if name not in ATTACKS:
        raise UnknownNameError(f"unknown attack {name!r}; known attacks: {', '.join(sorted(ATTACKS))}")
    if not issubclass(ATTACKS[name], FixedBudgetAttack):
        raise InputError(f"attack {name!r} has no eps budget; robustness curves need fixed-budget attacks")
    return name


def evaluation_plan(
    attacks: Sequence[str] | None, eps: Sequence[float], attack_params: Mapping[str, Mapping[str, Any]] | None, bounds: Bounds
) -> tuple[list[str], list[float], dict[str, dict[str, Any]]]:
    """The checked attack names, sorted distinct eps grid and per-attack constructor keywords
    (defaults + the caller's) of an evaluation; eps in attack_params is refused (the grid sets it)."""
    names = [_check_attack(a) for a in (attacks if attacks is not None else default_attacks())]
    if not names:
        raise InputError("no attacks to evaluate with")
    eps_list = sorted({check_eps(e, bounds) for e in eps})
    if not eps_list:
        raise InputError("eps must hold at least one value")
    unknown = set(attack_params or {}) - set(names)
    if unknown:
        raise InputError(f"attack_params for attacks not evaluated: {', '.join(sorted(unknown))}")
    params = {name: {**DEFAULT_PARAMS.get(name, {}), **dict((attack_params or {}).get(name, {}))} for name in names}
    fixed = sorted(name for name in names if "eps" in params[name])
    if fixed:
        raise InputError(f"attack_params set eps for {', '.join(fixed)}; the eps grid sets it (give it in eps)")
    return names, eps_list, params


def grid_evaluation(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
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
    progress: bool = False,
    keep_adversarial: bool = True,
) -> RobustnessEvaluation:
    """Accuracy of `model` under each attack at each eps, plus the gradient-masking checks and
    the per-example outcomes (with the adversarial points unless `keep_adversarial` is False).

    attacks: registered fixed-budget attack names (default: fgsm and pgd, those registered).
    attack_params: per attack, extra constructor keywords (default for pgd: 20 steps, 2 restarts,
    early exit). source_model: an undefended model to craft transfer attacks on (check 3).
    large_eps: the budget at which accuracy must be about 0 (default: the width of the box).
    """
    bounds = check_bounds(bounds)
    images = check_images("images", images, bounds)
    labels = check_labels("labels", labels, images.shape[0])
    names, eps_list, params = evaluation_plan(attacks, eps, attack_params, bounds)
    runner = Runner(model, images, labels, params=params, bounds=bounds, batch_size=batch_size, seed=seed)
    notes = [f"{name} is not registered in this build: not run" for name in PREFERRED_ATTACKS if name not in ATTACKS]

    total = len(names) * len(eps_list) + 1 + (len(names) * sum(e > 0 for e in eps_list) if source_model is not None else 0)
    bar = progress_bar(total, "evaluate", enabled=progress, unit="attack")

    def step(text: str) -> None:
        bar.set_postfix_str(text)
        bar.update()

    points, worst = [], torch.ones((len(eps_list), len(labels)), dtype=torch.bool, device=labels.device)
    worst &= runner.clean_correct
    masks: dict[tuple[str, float], np.ndarray] = {}
    x_adv = images.detach().cpu().numpy()[None].repeat(len(eps_list), 0) if keep_adversarial else None
    for name in names:
        for i, e in enumerate(eps_list):
            point, robust, adversarial = runner.run(name, e)
            points.append(point)
            if x_adv is not None:  # the first attack that breaks a point supplies its adversarial input
                first = (worst[i] & ~robust & runner.clean_correct).cpu().numpy()
                x_adv[i][first] = adversarial.detach().cpu().numpy()[first]
            worst[i] &= robust
            masks[(name, e)] = robust.cpu().numpy()
            step(f"{name} eps={e:g}")
    clean_correct = runner.clean_correct.cpu().numpy()
    evaluation = RobustnessEvaluation(
        n=len(labels),
        clean_accuracy=float(runner.clean_correct.double().mean()),
        eps=eps_list,
        attacks=names,
        points=points,
        worst_case=[float(w.double().mean()) for w in worst],
        notes=notes,
        per_example=PerExample(eps_list, labels.cpu().numpy().astype(np.int64), clean_correct,
                               first_breaker(eps_list, clean_correct, names, masks), x_adv_by_eps=x_adv),
    )
    if source_model is not None:
        for name in names:
            for e in eps_list:
                if e > 0:
                    evaluation.transfer.append(runner.run(name, e, source=(source_name, source_model))[0])
                    step(f"transfer {name} eps={e:g}")
    large = bounds[1] - bounds[0] if large_eps is None else check_eps(large_eps, bounds)
    strongest = large_eps_attack(names)
    known = [p for p in evaluation.points if p.attack == strongest and p.eps >= large]
    large_point = known[0] if known else runner.run(strongest, large)[0]
    evaluation.checks = masking_checks(evaluation, large_point, tolerance=tolerance)
    step("checks")
    bar.close()
    return evaluation
