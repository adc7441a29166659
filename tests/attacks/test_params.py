"""One checker for attack parameters: what each attack declares, kinds, caps."""

import inspect

import pytest
import torch

from advlab.attacks import ATTACKS
from advlab.attacks.params import COUNT_RANGES, check_params, declared_params, kind_of
from advlab.attacks.suites import resolve_suite
from advlab.cli.params import attack_params
from advlab.errors import InputError


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_declared_parameter_is_accepted_and_every_count_is_capped(name):
    cls = ATTACKS[name]
    declared = declared_params(cls)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    own = inspect.signature(cls.__init__).parameters
    for key, parameter in declared.items():  # each one alone reaches the constructor (no TypeError)
        kind, _ = kind_of(parameter)
        assert kind != "int" or key in COUNT_RANGES, f"{name}.{key}: give it a range in COUNT_RANGES"
        if parameter.default is not inspect.Parameter.empty and (key in own or key != "loss"):
            cls(model, **{key: parameter.default, **({"eps": 0.1} if "eps" in declared and key != "eps" else {})})


def test_suite_files_and_dash_p_share_the_checker():
    with pytest.raises(InputError, match=r"steps=1000000000000: expected an integer in 1\.\.100,000"):
        attack_params("pgd", ["steps=1000000000000"])
    with pytest.raises(InputError, match=r"steps=1000000000000: expected an integer in 1\.\.100,000"):
        resolve_suite([{"attack": "pgd", "params": {"steps": 10**12}}], ATTACKS)
    checked = check_params("apgd-t", ATTACKS["apgd-t"], {"steps": 3, "restarts": 0 + 1, "rho": 1}, reserved={}, where="x")
    assert checked == {"steps": 3, "restarts": 1, "rho": 1.0} and isinstance(checked["rho"], float)
    assert attack_params("bim", ["steps=none"]) == {"steps": None}
    for bad in ({"steps": True}, {"steps": 2.0}, {"step_size": float("inf")}, {"early_exit": 1}, {"loss": ["ce"]}):
        with pytest.raises(InputError, match="pgd"):
            resolve_suite([{"attack": "pgd", "params": bad}], ATTACKS)


def test_suites_run_fixed_budget_attacks_in_norms_they_support():
    for name in ("deepfool", "minpgd", "cw", "lbfgs", "penalty"):
        with pytest.raises(InputError, match="finds minimal perturbations"):
            resolve_suite([{"attack": name}], ATTACKS)
    with pytest.raises(InputError, match="fgsm supports --norm linf, not l2"):
        resolve_suite([{"attack": "fgsm"}], ATTACKS, norm="l2")
    entries, _ = resolve_suite([{"attack": "fgsm"}, {"attack": "bim", "params": {"steps": 2}}], ATTACKS, norm="linf")
    assert [dict(e.params) for e in entries] == [{}, {"steps": 2}]
    for suite in ("standard", "quick"):
        for norm in ("linf", "l2"):
            resolve_suite(suite, ATTACKS, norm=norm)
