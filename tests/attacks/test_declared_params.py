"""Attack parameters are declared once, by the constructor: `declared_params` gives the CLI's
names, types and defaults, `params()` reports every setting as set, `repr` shows them."""

from __future__ import annotations

import inspect

import pytest
import torch

from advlab.attacks import ATTACKS, PGD, make_attack
from advlab.attacks.base import declared_params
from advlab.cli.params import attack_params

MODEL = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))


def _make(name, **params):
    needs_eps = declared_params(ATTACKS[name]).get("eps")
    eps = {"eps": 0.1} if needs_eps is not None and needs_eps.default is inspect.Parameter.empty else {}
    return make_attack(name, MODEL, **eps, **params)


def test_declared_params_carry_the_signature_types_and_defaults():
    declared = declared_params(PGD)
    assert list(declared)[:4] == ["bounds", "batch_size", "seed", "progress"]
    assert declared["steps"].default == 40 and declared["steps"].annotation == "int"
    assert declared["step_size"].annotation == "float | None" and declared["eps"].default is inspect.Parameter.empty


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_declared_parameter_is_reported_as_set(name):
    attack = _make(name)
    reported = attack.params()
    assert set(declared_params(type(attack))) - {"progress"} <= set(reported)
    assert reported["batch_size"] == 1000 and reported["bounds"] == [0.0, 1.0]
    assert "progress" not in reported


def test_params_report_values_as_set_and_resolved():
    attack = PGD(MODEL, eps=0.1, steps=4, seed=3)
    assert attack.params()["steps"] == 4 and attack.params()["seed"] == 3
    assert attack.params()["step_size"] == pytest.approx(2.5 * 0.1 / 4)  # None resolved to the default rule
    bim = make_attack("bim", MODEL, eps=0.1)
    assert bim.params()["random_start"] is False and bim.params()["restarts"] == 1  # pinned by BIM, still reported
    assert make_attack("cw", MODEL).params()["norm"] == "l2"  # a class's fixed setting


def test_repr_names_the_class_and_its_parameters():
    text = repr(PGD(MODEL, eps=0.1, steps=4))
    assert text.startswith("PGD(bounds=[0.0, 1.0], batch_size=1000, seed=0, eps=0.1, norm='linf'")
    assert "steps=4" in text and text.endswith(")")


def test_cli_types_come_from_the_declaration():
    assert attack_params("pgd", ["steps=5", "step_size=none", "early_exit=yes", "bounds=0,1"]) == {
        "steps": 5, "step_size": None, "early_exit": True, "bounds": (0.0, 1.0)}
