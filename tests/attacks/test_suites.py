"""The named suites: standard as it was, plus/rand as the reference code's versions, malt; every one resolves."""

import pytest
import torch
from torch import nn

from advlab.attacks import ATTACKS
from advlab.attacks.suites import SUITES, SuiteAttack, resolve_suite, suite_attacks


def test_standard_is_unchanged():
    assert SUITES["standard"] == (
        SuiteAttack("apgd-ce", "apgd", {"loss": "ce", "steps": 100, "restarts": 1}),
        SuiteAttack("apgd-t", "apgd-t", {"steps": 100, "targets": 9, "restarts": 1}),
        SuiteAttack("fab-t", "fab-t", {"steps": 100, "targets": 9}),
        SuiteAttack("square", "square", {"queries": 5000, "p_init": 0.8, "rescale_schedule": False}),
    )


def test_plus_and_rand_follow_the_reference_versions():
    """autoattack.py, set_version: plus = apgd-ce, apgd-dlr (5 restarts), fab (5 restarts), square
    (5000 queries), apgd-t, fab-t (9 targets, 1 restart); rand = apgd-ce, apgd-dlr with eot_iter 20."""
    plus = {e.label: (e.attack, dict(e.params)) for e in SUITES["plus"]}
    assert list(plus) == ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]
    assert plus["apgd-ce"] == ("apgd", {"loss": "ce", "steps": 100, "restarts": 5})
    assert plus["apgd-dlr"] == ("apgd", {"loss": "dlr", "steps": 100, "restarts": 5})
    assert plus["fab"] == ("fab", {"steps": 100, "restarts": 5})
    assert plus["square"][1]["queries"] == 5000 and plus["square"][1]["restarts"] == 1
    assert plus["apgd-t"][1]["targets"] == 9 and plus["fab-t"][1]["targets"] == 9
    rand = [(e.attack, e.params["loss"], e.params["eot"]) for e in SUITES["rand"]]
    assert rand == [("apgd", "ce", 20), ("apgd", "dlr", 20)]
    (malt,) = SUITES["malt"]
    assert malt.attack == "apgd-t" and malt.params["target_ranking"] == "malt" and malt.params["targets"] <= 5


@pytest.mark.parametrize("name", sorted(SUITES))
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_every_named_suite_resolves_and_builds(name, norm):
    entries, missing = resolve_suite(name, ATTACKS, norm=norm)
    assert missing == [] and len(entries) == len(SUITES[name])
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    attacks = suite_attacks(entries, ATTACKS, model, eps=0.1, norm=norm, bounds=(0.0, 1.0), seed=0, batch_size=10, progress=False)
    assert [a.name for a in attacks] == [e.attack for e in entries]


def test_square_restarts_in_a_user_suite():
    """Used to end in a TypeError (Square took no `restarts`)."""
    entries, _ = resolve_suite([{"attack": "square", "params": {"queries": 20, "restarts": 3}}], ATTACKS)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    (square,) = suite_attacks(entries, ATTACKS, model, eps=0.1, norm="linf", bounds=(0.0, 1.0), seed=0, batch_size=10, progress=False)
    assert square.restarts == 3
    x = torch.rand(6, 4)
    result = square(x, model(x).argmax(1))
    assert bool((result.extra["queries"] <= 60).all())


def test_fast_is_the_default_suite_of_the_evaluation():
    import inspect

    from advlab.analysis.carlini import run_carlini_checks
    from advlab.analysis.evaluation import evaluate_suite
    from advlab.attacks.suites import DEFAULT_SUITE

    assert DEFAULT_SUITE == "fast" and [e.attack for e in SUITES[DEFAULT_SUITE]] == ["apgd-a"]
    for function in (evaluate_suite, run_carlini_checks):
        assert inspect.signature(function).parameters["suite"].default == DEFAULT_SUITE
