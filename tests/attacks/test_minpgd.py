"""MinPGD: minimal distances on linear models (exact by bisection), targets, a tiny ReLU net."""

import pytest
import torch
from torch import nn

from advlab.attacks import PGD, MinPGD
from advlab.errors import InputError
from advlab.training import TrainConfig, train_model

from .linear_minimum import minimal_distance


def distances(result, norm):
    return result.l2 if norm == "l2" else result.linf


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_softmax_regression_distances_match_the_exact_minimum(softmax_model, embedded, norm):
    x, y = embedded.test.images[:16], embedded.test.labels[:16]
    result = MinPGD(softmax_model, norm=norm, steps=30)(x, y)
    exact = minimal_distance(softmax_model, x, y, norm).float()
    found = distances(result, norm)
    assert bool(result.success.all())
    assert bool((found >= exact * (1 - 1e-5) - 1e-6).all())  # float32 rounding aside
    ratio = (found / exact)[exact > 0]
    assert float(ratio.max()) < 1.001


def test_binary_logistic_regression_and_targets(logreg_37, embedded_37):
    x, y = embedded_37.test.images[:16], embedded_37.test.labels[:16]
    exact = minimal_distance(logreg_37, x, y, "linf").float()
    untargeted = MinPGD(logreg_37, steps=30)(x, y)
    targeted = MinPGD(logreg_37, steps=30)(x, y, targets=1 - y)  # binary: the same question
    for result in (untargeted, targeted):
        assert bool(result.success.all())
        assert bool((result.linf >= exact * (1 - 1e-5) - 1e-6).all())
        assert float((result.linf / exact)[exact > 0].max()) < 1.001


def test_targeted_multiclass(softmax_model, embedded):
    x, y = embedded.test.images[:12], embedded.test.labels[:12]
    targets = (y + 1) % 10
    result = MinPGD(softmax_model, steps=30)(x, y, targets=targets)
    exact = minimal_distance(softmax_model, x, y, "linf", targets=targets).float()
    with torch.no_grad():
        assert torch.equal(result.success, softmax_model(result.x_adv).argmax(1) == targets)
    reachable = exact.isfinite()
    assert bool(result.success[reachable].all())
    assert bool((result.linf[reachable] >= exact[reachable] * (1 - 1e-5) - 1e-6).all())
    ratio = (result.linf / exact)[reachable & (exact > 0)]
    assert float(ratio.median()) < 1.01
    assert float(ratio.max()) < 1.25  # weaker where several classes tie with the target (docstring)


def test_small_relu_net_no_pgd_beats_it(embedded):
    """No margin PGD with restarts finds an adversarial example within 0.99 of the distance
    MinPGD reports."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))
    train_model(model, embedded.train, TrainConfig(epochs=1, lr=1e-3, seed=0), progress=False)
    model.eval()
    x, y = embedded.test.images[:12], embedded.test.labels[:12]
    result = MinPGD(model, steps=50)(x, y)
    assert bool(result.success.all())
    keep = result.clean_correct
    eps = 0.99 * result.linf[keep]
    for i, e in zip(keep.nonzero().flatten().tolist(), eps.tolist()):
        pgd = PGD(model, eps=e, steps=100, step_size=e / 20, loss="margin", restarts=5, seed=i)
        assert not bool(pgd(x[i : i + 1], y[i : i + 1]).success[0])


def test_already_misclassified_inputs_are_returned_unchanged(softmax_model, embedded):
    x, y = embedded.test.images[:40], embedded.test.labels[:40]
    result = MinPGD(softmax_model, steps=10, search_steps=3)(x, y)
    wrong = ~result.clean_correct
    assert bool(wrong.any())
    assert torch.equal(result.x_adv[wrong], x[wrong])


def test_unreachable_examples_fail_cleanly():
    """A constant classifier: no point of the box changes its prediction."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([2.0, 0.0, 0.0]))
    x = torch.rand(3, 4)
    result = MinPGD(model, steps=5)(x, torch.zeros(3, dtype=torch.long))
    assert not bool(result.success.any())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(steps=0), "steps"),
        (dict(search_steps=0), "search_steps"),
        (dict(rtol=0.0), "rtol"),
        (dict(candidates=1), "candidates"),
        (dict(norm="l1"), "norm"),
    ],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(InputError, match=message):
        MinPGD(nn.Linear(2, 2), **kwargs)
