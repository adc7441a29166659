"""Attacks: one module each, all through the `Attack` base, found by name."""

from __future__ import annotations

from typing import Any

from torch import nn

from advlab.attacks.adaptive import AdaptiveAPGD
from advlab.attacks.apgd import APGD, APGDT
from advlab.attacks.base import Attack, FixedBudgetAttack, Perturbed, ProbabilityOutputWarning
from advlab.attacks.cw import CarliniWagnerL2
from advlab.attacks.deepfool import DeepFool
from advlab.attacks.fab import FAB, FABT
from advlab.attacks.fgsm import FGM, FGSM
from advlab.attacks.iterative import BIM, PGD
from advlab.attacks.lbfgs import LBFGS
from advlab.attacks.minpgd import MinPGD
from advlab.attacks.penalty import Penalty
from advlab.attacks.result import AttackResult
from advlab.attacks.square import Square
from advlab.errors import UnknownNameError

ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls for cls in (FGSM, FGM, LBFGS, Penalty, PGD, BIM, DeepFool, CarliniWagnerL2, MinPGD, Square, APGD, APGDT, AdaptiveAPGD, FAB, FABT)
}


def make_attack(name: str, model: nn.Module, **params: Any) -> Attack:
    """Build a registered attack by name."""
    try:
        cls = ATTACKS[name]
    except KeyError:
        raise UnknownNameError(f"unknown attack {name!r}; known attacks: {', '.join(sorted(ATTACKS))}") from None
    return cls(model, **params)


__all__ = [
    "APGD",
    "APGDT",
    "ATTACKS",
    "BIM",
    "FAB",
    "FABT",
    "FGM",
    "FGSM",
    "LBFGS",
    "PGD",
    "AdaptiveAPGD",
    "Attack",
    "AttackResult",
    "CarliniWagnerL2",
    "DeepFool",
    "FixedBudgetAttack",
    "MinPGD",
    "Penalty",
    "Perturbed",
    "ProbabilityOutputWarning",
    "Square",
    "make_attack",
]
