import math

import numpy as np
import pytest
import torch
from torch import nn

from advlab.analysis import evaluate_robustness, parse_eps
from advlab.analysis import robustness as robustness_module
from advlab.attacks import ATTACKS, Attack, Perturbed
from advlab.errors import InputError, UnknownNameError
from advlab.exact.linear import logistic_loss_direction, max_linear_linf

needs_pgd = pytest.mark.skipif("pgd" not in ATTACKS, reason="pgd is not registered in this build")


@pytest.mark.parametrize(
    "text, expected",
    [("0:0.3:0.05", [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]), ("0:0.25:0.1", [0.0, 0.1, 0.2]), ("0.1,0,0.1", [0.0, 0.1]), ("0.2", [0.2])],
)
def test_parse_eps(text, expected):
    assert parse_eps(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "a", "0:0.3", "0:0.3:0", "0.3:0:0.1", "0,x"])
def test_parse_eps_rejects(text):
    with pytest.raises(InputError):
        parse_eps(text)


def test_fgsm_curve_of_logistic_regression_is_the_exact_robust_accuracy(logreg_37, embedded_37):
    """For a linear model FGSM is the exact worst case in the L-inf ball and box (Goodfellow et al. Sec. 3)."""
    x, y = embedded_37.test.images, embedded_37.test.labels
    eps = [0.0, 0.02, 0.05, 0.1, 0.2]
    evaluation = evaluate_robustness(logreg_37, x, y, attacks=["fgsm"], eps=eps)
    clean_correct = (logreg_37(x).squeeze(1) > 0).long() == y
    for e, accuracy in zip(eps, evaluation.curve("fgsm")):
        worst = max_linear_linf(x.flatten(1), logistic_loss_direction(logreg_37.linear.weight, y), e).view_as(x)
        exact = clean_correct & ((logreg_37(worst).squeeze(1) > 0).long() == y)
        assert accuracy == pytest.approx(float(exact.double().mean()))
    curve = evaluation.curve("fgsm")
    assert curve[0] == evaluation.clean_accuracy and all(b <= a for a, b in zip(curve, curve[1:]))
    assert evaluation.worst_case == curve


def test_any_module_and_its_mode_is_kept(embedded):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.Dropout(0.5), nn.ReLU(), nn.Linear(32, 10)).train()
    evaluation = evaluate_robustness(model, embedded.test.images[:100], embedded.test.labels[:100], attacks=["fgsm"], eps=[0, 0.1])
    assert model.training and evaluation.n == 100 and evaluation.attacks == ["fgsm"]
    point = evaluation.point("fgsm", 0.0)
    assert point.accuracy == evaluation.clean_accuracy and point.error == pytest.approx(1 - point.accuracy)


@pytest.mark.parametrize("attacks", [["fgsm"], pytest.param(["fgsm", "pgd"], marks=needs_pgd)])
def test_accuracy_at_eps_zero_is_the_clean_accuracy_and_worst_case_is_lowest(softmax_model, embedded, attacks):
    x, y = embedded.test.images[:300], embedded.test.labels[:300]
    evaluation = evaluate_robustness(softmax_model, x, y, attacks=attacks, eps=[0, 0.05, 0.1])
    clean = float((softmax_model(x).argmax(1) == y).double().mean())
    for attack in attacks:
        assert evaluation.point(attack, 0).accuracy == clean
        assert all(w <= a for w, a in zip(evaluation.worst_case, evaluation.curve(attack)))
        assert not math.isnan(evaluation.point(attack, 0.1).mean_confidence_on_errors)


@needs_pgd
def test_pgd_curve_is_monotone_and_at_least_as_strong_as_fgsm(softmax_model, embedded):
    x, y = embedded.test.images[:200], embedded.test.labels[:200]
    evaluation = evaluate_robustness(softmax_model, x, y, eps=[0, 0.02, 0.04, 0.06, 0.1])
    pgd, fgsm = evaluation.curve("pgd"), evaluation.curve("fgsm")
    assert all(b <= a + 1 / 200 for a, b in zip(pgd, pgd[1:]))
    assert all(p <= f + 1 / 200 for p, f in zip(pgd, fgsm))
    assert not evaluation.flagged


def test_default_attacks_note_missing_pgd(softmax_model, embedded):
    evaluation = evaluate_robustness(softmax_model, embedded.test.images[:20], embedded.test.labels[:20], eps=[0])
    assert evaluation.attacks == [a for a in ("fgsm", "pgd") if a in ATTACKS]
    assert any("pgd" in note for note in evaluation.notes) == ("pgd" not in ATTACKS)


class _NoBudget(Attack):
    name = "no-budget"

    def _perturb(self, x, goal, targeted, indices):
        return Perturbed(x)


def test_bad_requests(softmax_model, embedded, monkeypatch):
    x, y = embedded.test.images[:10], embedded.test.labels[:10]
    with pytest.raises(UnknownNameError):
        evaluate_robustness(softmax_model, x, y, attacks=["nope"])
    monkeypatch.setitem(robustness_module.ATTACKS, "no-budget", _NoBudget)
    with pytest.raises(InputError, match="no eps budget"):
        evaluate_robustness(softmax_model, x, y, attacks=["no-budget"])
    with pytest.raises(InputError, match="images must be a floating tensor"):
        evaluate_robustness(softmax_model, (x * 255).long(), y, attacks=["fgsm"])
    with pytest.raises(InputError, match="labels"):
        evaluate_robustness(softmax_model, x, y[:5], attacks=["fgsm"])
    for kwargs in ({"eps": [-0.1]}, {"eps": [1.5]}, {"eps": []}, {"attacks": []}, {"attack_params": {"fgm": {"eps": 1}}}):
        with pytest.raises(InputError):
            evaluate_robustness(softmax_model, x, y, **{"attacks": ["fgsm"], **kwargs})


def test_an_eps_in_attack_params_is_refused(softmax_model, embedded):
    """It would replace every value of the grid (issue 10: PGD reported 0% "at eps = 0")."""
    with pytest.raises(InputError, match="the eps grid sets it"):
        evaluate_robustness(softmax_model, embedded.test.images[:5], embedded.test.labels[:5], attacks=["pgd"],
                            eps=[0.0, 0.1], attack_params={"pgd": {"eps": 0.2}}, progress=False)


def test_a_suite_through_evaluate_robustness_is_the_suite_cascade():
    """evaluate_robustness(..., suite=NAME) runs evaluate_suite at each eps given and returns its
    outcomes as one RobustnessEvaluation; it refuses an attack list beside a suite and a suite
    without eps."""
    from advlab.analysis import evaluate_suite

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 12), torch.nn.ReLU(), torch.nn.Linear(12, 4)).double()
    x = torch.rand(10, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = model(x).argmax(1).detach()
    through = evaluate_robustness(model, x, y, suite="quick", eps=[0.1, 0.2])
    for i, e in enumerate([0.1, 0.2]):
        direct = evaluate_suite(model, x, y, suite="quick", eps=e)
        assert through.kind == "suite" and through.suites[i].broken_by == direct.broken_by
        assert [b or "" for b in through.per_example.broken_by[i]] == direct.broken_by
        assert np.array_equal(through.per_example.x_adv[i], direct.x_adv.numpy())
        assert through.worst_case[i] == direct.robust_accuracy
    with pytest.raises(InputError, match="not both"):
        evaluate_robustness(model, x, y, suite="quick", eps=0.1, attacks=["pgd"])
    with pytest.raises(InputError, match="a suite needs eps"):
        evaluate_robustness(model, x, y, suite="quick")
