"""The checks of Carlini et al. 2019 on a suite evaluation: pure functions of what
`run_carlini_checks` measured, skipped when it was not run, failing on a model that masks
its gradients."""

import torch
from torch import nn

from advlab.analysis.carlini import run_carlini_checks
from advlab.analysis.evaluation import evaluate_suite
from advlab.analysis.masking import suite_checks
from tests.masked import Rounded

SUITE = [{"attack": "apgd", "params": {"steps": 10}}]
NAMES = ("attack loss converges", "unbounded eps -> 0", "transfer <= white-box", "more iterations ~ same", "black-box <= white-box")


def _case(masked: bool):
    torch.manual_seed(1)
    inner = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 6)).double().eval()
    with torch.no_grad():
        inner[3].weight.mul_(8)
    model = Rounded(inner).eval() if masked else inner
    x = torch.rand(30, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, inner, x, y


def _by_name(evaluation):
    return {c.name: c for c in suite_checks(evaluation)}


def test_without_the_runs_the_checks_are_skipped():
    model, _, x, y = _case(masked=False)
    checks = _by_name(evaluate_suite(model, x, y, eps=0.05, suite=SUITE))
    assert all(checks[name].status == "skipped" for name in NAMES)


def test_an_honest_model_passes_and_a_masked_one_fails():
    model, inner, x, y = _case(masked=False)
    ev = evaluate_suite(model, x, y, eps=0.05, suite=SUITE)
    found = run_carlini_checks(ev, model, x, y, suite=SUITE, sample=10, surrogate=inner)
    assert found["sample"] == min(10, int(ev.robust.sum())) > 0 and len(found["loss_curve"]) == 101
    checks = _by_name(ev)
    assert checks["unbounded eps -> 0"].status == "pass" and checks["transfer <= white-box"].status in ("pass", "fail")
    assert all(checks[name].status != "skipped" for name in NAMES)

    masked, inner, x, y = _case(masked=True)
    ev = evaluate_suite(masked, x, y, eps=0.2, suite=SUITE)
    run_carlini_checks(ev, masked, x, y, suite=SUITE, sample=10, surrogate=inner)
    checks = _by_name(ev)
    assert checks["unbounded eps -> 0"].status == "fail"  # APGD has no gradient to follow, even at eps = 1
    assert checks["black-box <= white-box"].status == "fail"  # Square breaks what APGD could not
    assert checks["transfer <= white-box"].status == "fail"  # the unmasked surrogate's gradients transfer


def test_the_convergence_check_reads_the_last_quarter_of_the_curve():
    from advlab.analysis.masking import check_convergence

    model, _, x, y = _case(masked=False)
    ev = evaluate_suite(model, x, y, eps=0.05, suite=SUITE)
    ev.carlini = {"loss_curve": [0.0, 0.8, 0.95, 0.99, 1.0]}  # 0.01 of a rise of 1.0 in the last quarter
    assert check_convergence(ev).status == "pass"
    ev.carlini = {"loss_curve": [0.0, 0.2, 0.4, 0.6, 1.0]}
    assert check_convergence(ev).status == "fail"
