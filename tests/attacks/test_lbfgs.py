"""Szegedy's box-constrained L-BFGS: graded against the exact minimum on linear models, its
solver and c search checked in isolation, and the contract every attack keeps."""

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from advlab.attacks import LBFGS, make_attack
from advlab.attacks.lbfgs import projected_lbfgs
from advlab.attacks.losses import smooth_margin
from advlab.attacks.search import RTOL, WeightSearch
from advlab.cli import main
from advlab.errors import InputError
from advlab.exact import minimal_perturbation
from advlab.models import as_multiclass_logits


def double(model):
    return copy.deepcopy(model).double()


def check_contract(model, result, x):
    """In the box, success as re-run, failures returned unchanged."""
    assert float(result.x_adv.min()) >= 0 and float(result.x_adv.max()) <= 1
    with torch.no_grad():
        pred = as_multiclass_logits(model(result.x_adv)).argmax(1)
    expected = pred == result.targets if result.targeted else pred != result.labels
    assert torch.equal(result.success, expected)
    assert torch.equal(result.x_adv[~result.success], x[~result.success])


def ratios(result, exact):
    keep = result.success & (exact.distance > 0)
    return result.l2.double()[keep] / exact.distance[keep]


def test_logistic_regression_is_within_one_percent_of_the_exact_minimum(logreg_37, embedded_37):
    model = double(logreg_37)
    x, y = embedded_37.test.images[:16].double(), embedded_37.test.labels[:16]
    result = LBFGS(model)(x, y)
    exact = minimal_perturbation(model, x, y)
    check_contract(model, result, x)
    assert bool(result.success.all())
    ratio = ratios(result, exact)
    assert float(ratio.min()) >= 1 - 1e-9  # below the exact minimum would prove a bug
    assert float(ratio.max()) <= 1.01 and float(ratio.median()) <= 1.001
    c = result.extra["c"]
    assert bool(torch.isfinite(c[exact.distance > 0]).all()) and bool((c[exact.distance > 0] > 0).all())


def test_softmax_targeted_and_all_targets(softmax_model, embedded):
    """float32 here (float64 takes 3x longer): allow float32 rounding below the exact minimum."""
    x, y = embedded.test.images[:3], embedded.test.labels[:3]
    targets = (y + 3) % 10
    targeted = LBFGS(softmax_model)(x, y, targets=targets)
    check_contract(softmax_model, targeted, x)
    ratio = ratios(targeted, minimal_perturbation(softmax_model, x, y, targets=targets))
    assert bool(targeted.success.all()) and float(ratio.min()) >= 1 - 1e-5 and float(ratio.max()) <= 1.01
    every = LBFGS(softmax_model, all_targets=True)(x[:2], y[:2])
    check_contract(softmax_model, every, x[:2])
    ratio = ratios(every, minimal_perturbation(softmax_model, x[:2], y[:2]))
    assert bool(every.success.all()) and float(ratio.min()) >= 1 - 1e-5 and float(ratio.max()) <= 1.01


def test_failures_and_already_adversarial_come_back_unchanged(softmax_model, embedded):
    x, y = embedded.test.images[:8], embedded.test.labels[:8]
    with torch.no_grad():
        wrong = softmax_model(x).argmax(1) != y
    y_flipped = torch.where(torch.arange(8) < 2, (y + 1) % 10, y)  # two examples wrong on purpose
    result = LBFGS(softmax_model, c=1e6, search_steps=1)(x, y_flipped)  # c too large: r = 0
    already = wrong | (torch.arange(8) < 2)
    assert torch.equal(result.success, already)
    assert torch.equal(result.x_adv, x)
    assert bool(result.extra["c"].isnan().all())


def test_projected_lbfgs_solves_box_constrained_quadratics():
    """min sum_i s_i (x_i - p_i)^2 over [0, 1]: x* = clip(p), per row, badly scaled."""
    generator = torch.Generator().manual_seed(0)
    p = torch.randn(5, 30, generator=generator, dtype=torch.float64) * 2
    scale = torch.logspace(-2, 2, 30, dtype=torch.float64).expand(5, 30)

    def objective(x, rows):
        return (scale[rows] * (x - p[rows]) ** 2).sum(1), 2 * scale[rows] * (x - p[rows])

    found = projected_lbfgs(objective, torch.full_like(p, 0.5), (0.0, 1.0), max_iter=200)
    torch.testing.assert_close(found, p.clamp(0, 1), rtol=0, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(threshold=st.floats(1e-4, 1e4), start=st.floats(1e-3, 1e3))
def test_weight_search_brackets_then_bisects(threshold, start):
    """With success exactly for w < threshold, the bracket always contains the threshold."""
    search = WeightSearch(torch.tensor([start], dtype=torch.float64))
    for _ in range(30):
        search.update(search.weight < threshold)
        assert float(search.best_success) <= threshold or float(search.best_success) == 0
        assert float(search.first_failure) >= threshold
    assert bool(search.settled().all())
    assert float(search.first_failure) <= float(search.best_success) * (1 + RTOL)


def test_smooth_margin_at_temperature_one_is_cross_entropy():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    goal = torch.tensor([0, 1, 2, 3, 4, 0])
    ce = F.cross_entropy(logits, goal, reduction="none")
    torch.testing.assert_close(F.softplus(smooth_margin(logits, goal, True, 1.0)), ce)
    not_y = -torch.log1p(-logits.softmax(1).gather(1, goal[:, None]).squeeze(1))
    torch.testing.assert_close(F.softplus(smooth_margin(logits, goal, False, 1.0)), not_y)
    hard = smooth_margin(logits, goal, True, 1e-4)
    expected = logits.scatter(1, goal[:, None], -math.inf).amax(1) - logits.gather(1, goal[:, None]).squeeze(1)
    torch.testing.assert_close(hard, expected, rtol=0, atol=1e-3)


class NoGradient(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(784, 10)

    def forward(self, x):
        return self.linear(x.flatten(1)).detach()


@pytest.mark.parametrize(
    "kwargs, match",
    [({"c": 0.0}, "c must"), ({"c": -1.0}, "c must"), ({"c": math.nan}, "c must"), ({"temperature": 0.0}, "temperature"),
     ({"search_steps": 0}, "search_steps"), ({"max_iter": 0}, "max_iter")],
)
def test_bad_parameters(softmax_model, kwargs, match):
    with pytest.raises(InputError, match=match):
        LBFGS(softmax_model, **kwargs)


def test_bad_targets_and_models(softmax_model, logreg_37, embedded):
    x, y = embedded.test.images[:3], embedded.test.labels[:3]
    with pytest.raises(InputError, match="equal the true labels"):
        LBFGS(softmax_model)(x, y, targets=y)
    with pytest.raises(InputError, match="0..1"):
        LBFGS(logreg_37)(x, y % 2, targets=torch.tensor([2, 2, 2]))
    with pytest.raises(InputError, match="no gradient"):
        LBFGS(NoGradient())(x, y)


def test_registry_and_cli(tmp_path, capsys):
    attack = make_attack("lbfgs", nn.Linear(4, 3), c=0.5, all_targets=True, temperature=1.0)
    assert json.loads(json.dumps(attack.params()))["c"] == 0.5
    checkpoint = tmp_path / "logreg.safetensors"
    assert main(["train", "logreg", "--classes", "3,7", "--epochs", "1", "--out", str(checkpoint), "--no-progress"]) == 0
    out = tmp_path / "out"
    argv = ["attack", str(checkpoint), "--method", "lbfgs", "-p", "c=0.5", "-p", "all_targets=true", "--limit", "4"]
    code = main([*argv, "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["params"]["all_targets"] is True and summary["summary"]["success_rate"] == 1.0
