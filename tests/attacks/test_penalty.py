"""The penalty attack (Adam on CE + lam ||r||^2 in the box), graded against the exact minimum."""

import copy
import math

import pytest
import torch
from torch import nn

from advlab.attacks import Penalty, make_attack
from advlab.errors import InputError
from advlab.exact import minimal_perturbation
from advlab.models import as_multiclass_logits


def check_contract(model, result, x):
    assert float(result.x_adv.min()) >= 0 and float(result.x_adv.max()) <= 1
    with torch.no_grad():
        pred = as_multiclass_logits(model(result.x_adv)).argmax(1)
    expected = pred == result.targets if result.targeted else pred != result.labels
    assert torch.equal(result.success, expected)
    assert torch.equal(result.x_adv[~result.success], x[~result.success])


@pytest.mark.parametrize("targeted", [False, True])
def test_never_below_and_close_to_the_exact_minimum(logreg_37, embedded_37, softmax_model, embedded, targeted):
    for model, data, classes in ((logreg_37, embedded_37, 2), (softmax_model, embedded, 10)):
        model = copy.deepcopy(model).double()
        x, y = data.test.images[:12].double(), data.test.labels[:12]
        targets = (y + 1) % classes if targeted else None
        result = Penalty(model)(x, y, targets=targets)
        check_contract(model, result, x)
        exact = minimal_perturbation(model, x, y, targets=targets)
        keep = result.success & (exact.distance > 0)
        ratio = result.l2.double()[keep] / exact.distance[keep]
        assert float(result.success.double().mean()) == 1.0
        assert float(ratio.min()) >= 1 - 1e-9
        assert float(ratio.median()) <= 1.1  # a first-order method with a fixed step: close, not exact
        assert bool(torch.isfinite(result.extra["lam"][keep]).all())


def test_binary_untargeted_equals_targeted(logreg_37, embedded_37):
    """On one logit, -log(1 - p_y) is the cross-entropy of the other class."""
    x, y = embedded_37.test.images[:6], embedded_37.test.labels[:6]
    attack = Penalty(logreg_37, search_steps=3)
    torch.testing.assert_close(attack(x, y).x_adv, attack(x, y, targets=1 - y).x_adv)


def test_failures_come_back_unchanged(softmax_model, embedded):
    x, y = embedded.test.images[:8], embedded.test.labels[:8]
    result = Penalty(softmax_model, lam=1e6, steps=5, search_steps=1)(x, y, targets=(y + 1) % 10)
    check_contract(softmax_model, result, x)
    assert not bool(result.success.any())
    assert bool(result.extra["lam"].isnan().all())


class NoGradient(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(784, 10)

    def forward(self, x):
        return self.linear(x.flatten(1)).detach()


@pytest.mark.parametrize(
    "kwargs, match",
    [({"lam": 0.0}, "lam"), ({"lam": -2.0}, "lam"), ({"lam": math.inf}, "lam"), ({"lr": 0.0}, "lr"),
     ({"steps": 0}, "steps"), ({"search_steps": 0}, "search_steps")],
)
def test_bad_parameters(softmax_model, kwargs, match):
    with pytest.raises(InputError, match=match):
        Penalty(softmax_model, **kwargs)


def test_bad_targets_and_models(softmax_model, embedded):
    x, y = embedded.test.images[:3], embedded.test.labels[:3]
    with pytest.raises(InputError, match="equal the true labels"):
        Penalty(softmax_model)(x, y, targets=y)
    with pytest.raises(InputError, match="0..9"):
        Penalty(softmax_model)(x, y, targets=torch.tensor([10, 10, 10]))
    with pytest.raises(InputError, match="no gradient"):
        Penalty(NoGradient())(x, y)
    assert make_attack("penalty", softmax_model, lam=0.5, steps=10).params()["lam"] == 0.5
