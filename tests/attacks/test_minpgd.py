"""MinPGD: distances against the exact minimum of linear models (closed form) and of small
ReLU networks (MILP), targets, unreachable and misclassified inputs, bad input."""

import pytest
import torch
from torch import nn

from advlab.attacks import PGD, MinPGD
from advlab.errors import InputError
from advlab.exact import minimal_linf, minimal_perturbation
from advlab.training import TrainConfig, train_model



def distances(result, norm):
    return result.l2 if norm == "l2" else result.linf


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_softmax_regression_distances_match_the_exact_minimum(softmax_model, embedded, norm):
    x, y = embedded.test.images[:16], embedded.test.labels[:16]
    result = MinPGD(softmax_model, norm=norm, steps=30)(x, y)
    exact = minimal_perturbation(softmax_model, x, y, norm=norm).distance.float()
    found = distances(result, norm)
    assert bool(result.success.all())
    assert bool((found >= exact * (1 - 1e-5) - 1e-6).all())  # float32 rounding aside
    ratio = (found / exact)[exact > 0]
    assert float(ratio.max()) < 1.001


def test_binary_logistic_regression_and_targets(logreg_37, embedded_37):
    x, y = embedded_37.test.images[:16], embedded_37.test.labels[:16]
    exact = minimal_perturbation(logreg_37, x, y, norm="linf").distance.float()
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
    exact = minimal_perturbation(softmax_model, x, y, norm="linf", targets=targets).distance.float()
    with torch.no_grad():
        assert torch.equal(result.success, softmax_model(result.x_adv).argmax(1) == targets)
    reachable = exact.isfinite()
    assert bool(result.success[reachable].all())
    assert bool((result.linf[reachable] >= exact[reachable] * (1 - 1e-5) - 1e-6).all())
    ratio = (result.linf / exact)[reachable & (exact > 0)]
    assert float(ratio.median()) < 1.01
    assert float(ratio.max()) < 1.25  # weaker where several classes tie with the target (docstring)


def test_small_relu_net_no_pgd_beats_it(relu_net, embedded):
    """No margin PGD with restarts finds an adversarial example within 0.99 of the distance
    MinPGD reports."""
    model = relu_net
    x, y = embedded.test.images[:12], embedded.test.labels[:12]
    result = MinPGD(model, steps=50)(x, y)
    assert bool(result.success.all())
    keep = result.clean_correct
    eps = 0.99 * result.linf[keep]
    for i, e in zip(keep.nonzero().flatten().tolist(), eps.tolist()):
        pgd = PGD(model, eps=e, steps=50, step_size=e / 10, loss="margin", restarts=3, seed=i)
        assert not bool(pgd(x[i : i + 1], y[i : i + 1]).success[0])


@pytest.fixture(scope="module")
def relu_net(embedded):
    """A 784-12-12-10 ReLU network, small enough for the exact MILP to take seconds."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 10))
    train_model(model, embedded.train, TrainConfig(epochs=2, lr=1e-3, seed=0), progress=False)
    return model.eval()


def test_small_relu_net_against_the_milp(relu_net, embedded):
    x, y = embedded.test.images[:12], embedded.test.labels[:12]
    exact = minimal_linf(relu_net, x, y, time_limit=30)
    result = MinPGD(relu_net, steps=50)(x, y)
    proven = torch.tensor([s == "optimal" for s in exact.status]) & result.clean_correct
    assert int(proven.sum()) >= 8
    assert bool(result.success.all())
    assert bool((result.linf.double() >= exact.lower * (1 - 1e-5) - 1e-7)[proven].all())
    ratio = (result.linf.double() / exact.upper)[proven]
    assert float(ratio.mean()) <= 1.005 and float(ratio.max()) <= 1.05


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
