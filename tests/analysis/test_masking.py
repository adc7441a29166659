import torch
from torch import nn

from advlab.analysis import AttackPoint, RobustnessEvaluation, evaluate_robustness
from advlab.analysis.masking import check_iterative, check_monotone, check_single_step_gap, check_transfer


class Quantised(nn.Module):
    """A deliberately gradient-masked model: the input is rounded to {0, 1} first (zero gradient)."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(torch.round(x))


def _status(evaluation):
    return {c.name: c.status for c in evaluation.checks}


def test_undefended_model_passes(softmax_model, embedded):
    x, y = embedded.test.images[:300], embedded.test.labels[:300]
    evaluation = evaluate_robustness(softmax_model, x, y, eps=[0, 0.1, 0.2], source_model=softmax_model)
    assert not evaluation.flagged, evaluation.checks
    assert _status(evaluation)["transfer <= white-box"] == "pass"


def test_gradient_masked_model_is_flagged(softmax_model, embedded):
    x, y = embedded.test.images[:300], embedded.test.labels[:300]
    evaluation = evaluate_robustness(Quantised(softmax_model), x, y, eps=[0, 0.1, 0.2, 0.3], source_model=softmax_model, source_name="plain")
    # white-box gradient attacks see a flat model: FGSM does nothing at all, PGD only moves by its random start ...
    assert evaluation.curve("fgsm")[-1] == evaluation.clean_accuracy
    assert evaluation.worst_case[-1] > 0.5
    # ... which the checks expose: large eps does not break it, and transfer from the plain model does better
    status = _status(evaluation)
    assert status["large eps -> 0"] == "fail" and status["transfer <= white-box"] == "fail"
    assert {c.name for c in evaluation.flagged} >= {"large eps -> 0", "transfer <= white-box"}
    assert "plain" in next(c.detail for c in evaluation.checks if c.name == "transfer <= white-box")


def _point(attack, eps, accuracy, restarts=2):
    return AttackPoint(attack, eps, accuracy, 1 - accuracy, 0.9, 0.0, {"restarts": restarts})


def _evaluation(fgsm, pgd, transfer=()):
    eps = [0.0, 0.1, 0.2]
    points = [_point("fgsm", e, a) for e, a in zip(eps, fgsm)] + [_point("pgd", e, a) for e, a in zip(eps, pgd)]
    worst = [min(f, p) for f, p in zip(fgsm, pgd)]
    transfer_points = [AttackPoint("fgsm", e, a, 0, 0, 0, {}, source="src") for e, a in zip(eps[1:], transfer)]
    return RobustnessEvaluation(100, fgsm[0], eps, ["fgsm", "pgd"], points, worst, transfer_points)


def test_checks_on_constructed_curves():
    honest = _evaluation([0.9, 0.5, 0.2], [0.9, 0.4, 0.1], transfer=[0.6, 0.3])
    assert [check(honest, 0.01).status for check in (check_iterative, check_monotone, check_transfer)] == ["pass"] * 3
    weak_pgd = _evaluation([0.9, 0.5, 0.2], [0.9, 0.6, 0.2])
    assert check_iterative(weak_pgd, 0.01).status == "fail" and "eps=0.1" in check_iterative(weak_pgd, 0.01).detail
    assert check_iterative(weak_pgd, 0.2).status == "pass"  # within tolerance
    rising = _evaluation([0.9, 0.5, 0.7], [0.9, 0.4, 0.1])
    assert check_monotone(rising, 0.01).status == "fail" and "fgsm" in check_monotone(rising, 0.01).detail
    assert check_transfer(_evaluation([0.9, 0.5, 0.2], [0.9, 0.4, 0.1], transfer=[0.2, 0.1]), 0.01).status == "fail"
    assert check_transfer(_evaluation([0.9, 0.5, 0.2], [0.9, 0.4, 0.1]), 0.01).status == "skipped"
    assert check_single_step_gap(honest).status == "pass"
    assert check_single_step_gap(_evaluation([0.9, 0.8, 0.1], [0.9, 0.4, 0.0])).status == "pass"  # gap at mid eps only
    masked_for_one_step = _evaluation([0.9, 0.8, 0.7], [0.9, 0.4, 0.1])
    assert check_single_step_gap(masked_for_one_step).status == "fail" and "eps=0.2" in check_single_step_gap(masked_for_one_step).detail
    fgsm_only = RobustnessEvaluation(100, 0.9, [0.0], ["fgsm"], [_point("fgsm", 0.0, 0.9)], [0.9])
    assert check_iterative(fgsm_only, 0.01).status == check_single_step_gap(fgsm_only).status == "skipped"


# ---- checks on suite evaluations: pure functions of the result --------------------------------------
def _suite(broken_by, probe=None, attacks=("apgd-ce", "apgd-t", "square")):
    from advlab.analysis.evaluation import SuiteEvaluation

    n = len(broken_by)
    robust = torch.tensor([b == "" for b in broken_by])
    return SuiteEvaluation(0.1, "linf", list(attacks), {a: {} for a in attacks}, torch.ones(n, dtype=torch.bool), robust,
                           list(broken_by), torch.zeros(n, 1), {}, {},
                           probe=probe if probe is not None else {"max_logit_change": 0.0, "probabilities": 0.0,
                                                                  "zero_or_nonfinite_gradient_share": 0.0, "probed_points": 100.0})


def test_suite_checks_read_only_the_result():
    from advlab.analysis.masking import suite_checks

    honest = _suite(["apgd-ce"] * 50 + [""] * 50)
    assert [c.status for c in suite_checks(honest)] == ["pass", "pass", "pass", "pass", "skipped", "skipped", "skipped", "skipped"]
    square = _suite(["apgd-ce"] * 50 + ["square"] * 5 + [""] * 45)
    targeted = _suite(["apgd-ce"] * 50 + ["apgd-t"] * 5 + [""] * 45)
    random = _suite([""] * 10, probe={"max_logit_change": 0.3, "probabilities": 0.0, "zero_or_nonfinite_gradient_share": 0.0, "probed_points": 10.0})
    softmax = _suite([""] * 10, probe={"max_logit_change": 0.0, "probabilities": 1.0, "zero_or_nonfinite_gradient_share": 0.0, "probed_points": 10.0})
    flat = _suite([""] * 10, probe={"max_logit_change": 0.0, "probabilities": 0.0, "zero_or_nonfinite_gradient_share": 0.5, "probed_points": 10.0})
    status = {name: {c.name: c.status for c in suite_checks(ev)} for name, ev in
              (("square", square), ("targeted", targeted), ("random", random), ("softmax", softmax), ("flat", flat))}
    assert status["square"]["black-box <= white-box"] == "fail"
    assert status["targeted"]["targeted ~ untargeted"] == "fail"
    assert status["random"]["deterministic logits"] == "fail" and status["softmax"]["deterministic logits"] == "fail"
    assert status["flat"]["gradients alive"] == "fail"
    doubled = suite_checks(honest, _suite(["apgd-ce"] * 60 + [""] * 40))[-1]
    assert doubled.status == "fail" and "50.0% -> 40.0%" in doubled.detail
    assert suite_checks(honest, honest)[-1].status == "pass"


def test_probe_sees_a_quantised_model(softmax_model, embedded):
    from advlab.analysis.evaluation import evaluate_suite

    x, y = embedded.test.images[:40], embedded.test.labels[:40]
    ev = evaluate_suite(Quantised(softmax_model), x, y, eps=0.1, suite=[{"attack": "apgd", "params": {"steps": 3}}])
    assert ev.probe["zero_or_nonfinite_gradient_share"] == 1.0
