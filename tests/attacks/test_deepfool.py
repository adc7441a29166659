"""DeepFool: closed forms on affine classifiers, minimality on linear models, batching, bad input."""

import copy

import pytest
import torch
from torch import nn

from advlab.attacks import DeepFool
from advlab.attacks.deepfool import PUSH
from advlab.errors import InputError
from advlab.exact import minimal_perturbation, multiclass_weights
from advlab.models import LogisticRegression, SoftmaxRegression
from tests.invariance import assert_same_per_example


WIDE = (-100.0, 100.0)  # a box no step reaches: the unconstrained problem
DUAL = {"l2": 2, "linf": 1}


def distances(result, norm):
    return result.l2 if norm == "l2" else result.linf


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("overshoot", [0.0, 0.02, 0.5])
def test_affine_binary_classifier_closed_form(norm, overshoot):
    """One step lands at (1 + overshoot) (|f(x)| / ||w||_q + push) from x, q the dual norm."""
    torch.manual_seed(0)
    model = LogisticRegression(30).double().eval()
    x = torch.rand(40, 30, dtype=torch.float64) * 2 - 1
    y = (model(x).squeeze(1) > 0).long()
    result = DeepFool(model, norm=norm, overshoot=overshoot, bounds=WIDE)(x, y)
    w, b = model.linear.weight.detach()[0], model.linear.bias.detach()[0]
    expected = (1 + overshoot) * ((x @ w + b).abs() / w.norm(p=DUAL[norm]) + PUSH)
    assert bool(result.success.all())
    torch.testing.assert_close(distances(result, norm), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_affine_multiclass_classifier_is_solved_exactly(norm):
    """The adversarial set of an affine classifier is a union of half-spaces, and DeepFool's
    first step goes to the nearest one: min_k |f_k| / ||w_k||_q, times (1 + overshoot)."""
    torch.manual_seed(1)
    model = SoftmaxRegression(25, 6).double().eval()
    x = torch.rand(50, 25, dtype=torch.float64)
    y = model(x).argmax(1)
    result = DeepFool(model, norm=norm, overshoot=0.02, bounds=WIDE)(x, y)
    assert bool(result.success.all())
    exact = minimal_perturbation(model, x, y, norm=norm, bounds=WIDE).distance
    torch.testing.assert_close(distances(result, norm), 1.02 * (exact + PUSH), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_box_constrained_distances_bound_the_exact_minimum(softmax_model, embedded, norm):
    x, y = embedded.test.images[:40], embedded.test.labels[:40]
    result = DeepFool(softmax_model, norm=norm)(x, y)
    assert bool(result.success.all())
    exact = minimal_perturbation(softmax_model, x, y, norm=norm).distance.float()
    found = distances(result, norm)
    assert bool((found >= exact - 1e-5).all())
    assert float((found / exact.clamp_min(1e-12))[exact > 0].median()) < 1.2


def test_candidates_limit_the_rival_classes(softmax_model, embedded):
    x, y = embedded.test.images[:40], embedded.test.labels[:40]
    two = DeepFool(softmax_model, candidates=2)(x, y)
    weight, bias = multiclass_weights(softmax_model)
    clean = x.flatten(1).double() @ weight.T + bias
    runner_up = clean.scatter(1, y[:, None], float("-inf")).argmax(1)
    moved = two.success & two.clean_correct
    # against one rival on a linear model, the point lands across that rival's boundary
    assert torch.equal(two.adv_pred[moved], runner_up[moved])


def test_targeted_reaches_the_target(softmax_model, embedded):
    x, y = embedded.test.images[:60], embedded.test.labels[:60]
    result = DeepFool(softmax_model, steps=100)(x, y, targets="random")
    with torch.no_grad():
        pred = softmax_model(result.x_adv).argmax(1)
    assert torch.equal(result.success, pred == result.targets)
    assert float(result.success.double().mean()) > 0.9


@pytest.mark.invariance
def test_examples_stop_when_adversarial_and_batches_agree(softmax_model, embedded):
    x, y = embedded.test.images[:64].double(), embedded.test.labels[:64]
    model = copy.deepcopy(softmax_model).double()
    whole = DeepFool(model)(x, y)
    split = DeepFool(model, batch_size=7)(x, y)
    assert_same_per_example(whole, split)
    wrong = ~whole.clean_correct
    assert torch.equal(whole.x_adv[wrong], x[wrong])  # already adversarial: untouched


def test_outputs_are_in_the_box(softmax_model, embedded):
    x, y = embedded.test.images[:40], embedded.test.labels[:40]
    for norm in ("l2", "linf"):
        result = DeepFool(softmax_model, norm=norm, overshoot=0.5)(x, y)
        assert bool(((result.x_adv >= 0) & (result.x_adv <= 1)).all())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(steps=0), "steps"),
        (dict(overshoot=-0.1), "overshoot"),
        (dict(overshoot=float("nan")), "overshoot"),
        (dict(candidates=1), "candidates"),
        (dict(norm="l0"), "norm"),
    ],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(InputError, match=message):
        DeepFool(nn.Linear(2, 2), **kwargs)
