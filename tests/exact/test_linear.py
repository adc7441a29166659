"""Exact minimal adversarial perturbations of linear models, checked against independent solvers:
scipy's linprog (L1, L-inf) and a brute-force QP over every face of the feasible set (L2)."""

import copy
import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog
from torch import nn

from advlab.errors import InputError
from advlab.exact import min_norm_halfspace, minimal_perturbation, multiclass_weights
from advlab.validation import NORMS
from advlab.models import LogisticRegression, SoftmaxRegression

TOL = 1e-9


def reference(x, a, m, norm, lo=0.0, hi=1.0):
    """min ||r|| s.t. a @ r >= m (rows of a), lo <= x + r <= hi; inf if infeasible.

    L1 / L-inf: linprog. L2: the optimum of a strictly convex QP is the least-norm point of
    one face (some box bounds and some constraints held with equality), so enumerate them all.
    """
    a, m = np.atleast_2d(a), np.atleast_1d(m)
    n = x.size
    low, high = lo - x, hi - x
    if norm == "linf":
        a_ub = np.vstack([np.hstack([np.eye(n), -np.ones((n, 1))]), np.hstack([-np.eye(n), -np.ones((n, 1))]),
                          np.hstack([-a, np.zeros((len(a), 1))])])
        res = linprog(np.r_[np.zeros(n), 1.0], A_ub=a_ub, b_ub=np.r_[np.zeros(2 * n), -m],
                      bounds=list(zip(low, high)) + [(0, None)], method="highs")
        return res.fun if res.status == 0 else np.inf
    if norm == "l1":
        res = linprog(np.ones(2 * n), A_ub=np.hstack([-a, a]), b_ub=-m,
                      bounds=[(0, h) for h in high] + [(0, -v) for v in low], method="highs")
        return res.fun if res.status == 0 else np.inf
    best = np.inf
    for face in itertools.product((0, 1, 2), repeat=n):  # at low, at high, free
        r = np.where(np.array(face) == 0, low, np.where(np.array(face) == 1, high, 0.0))
        free = [i for i in range(n) if face[i] == 2]
        for size in range(len(a) + 1):
            for active in itertools.combinations(range(len(a)), size):
                point = r.copy()
                if active:
                    rows = list(active)
                    rhs = m[rows] - a[rows] @ point
                    if free:
                        sol = np.linalg.lstsq(a[np.ix_(rows, free)], rhs, rcond=None)[0]
                        point[free] = sol
                    if np.abs(a[rows] @ point - m[rows]).max() > 1e-9:
                        continue
                if (point >= low - 1e-12).all() and (point <= high + 1e-12).all() and (a @ point >= m - 1e-12).all():
                    best = min(best, float(np.linalg.norm(point)))
    return best


def close(found, expected):
    if np.isinf(expected):
        return np.isinf(found)
    return abs(found - expected) <= 1e-7 * (1 + expected)


coords = st.floats(-2, 2, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 4),
    data=st.data(),
    m=st.one_of(st.just(0.0), st.floats(-1, 3).filter(lambda v: abs(v) > 1e-6)),  # the references use 1e-12 tolerances
    norm=st.sampled_from(NORMS),
)
def test_halfspace_matches_independent_solvers(n, data, m, norm):
    x = np.array(data.draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
    a = np.array(data.draw(st.lists(coords, min_size=n, max_size=n)))
    distance, r, feasible = min_norm_halfspace(
        torch.tensor(x)[None], torch.tensor(a)[None], torch.tensor([m], dtype=torch.float64), norm=norm
    )
    assert close(float(distance[0]), reference(x, a, m, norm))
    if bool(feasible[0]):
        r = r[0].numpy()
        assert a @ r >= m - 1e-12 and ((x + r) >= -1e-15).all() and ((x + r) <= 1 + 1e-15).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), norm=st.sampled_from(NORMS), targeted=st.booleans())
def test_multiclass_matches_independent_solvers(seed, norm, targeted):
    """Three classes, three features: untargeted = min over k, targeted = both constraints at once."""
    generator = torch.Generator().manual_seed(seed)
    model = SoftmaxRegression(3, 3).double()
    with torch.no_grad():
        model.linear.weight.copy_(torch.randn(3, 3, generator=generator, dtype=torch.float64))
        model.linear.bias.copy_(torch.randn(3, generator=generator, dtype=torch.float64))
    x = torch.rand(2, 3, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (2,), generator=generator)
    targets = (y + torch.randint(1, 3, (2,), generator=generator)) % 3 if targeted else None
    result = minimal_perturbation(model, x, y, norm=norm, targets=targets)
    weight, bias = multiclass_weights(model)
    w, b = weight.numpy(), bias.numpy()
    for i in range(2):
        xi, yi = x[i].numpy(), int(y[i])
        z = w @ xi + b
        if targeted:
            t = int(targets[i])
            others = [j for j in range(3) if j != t]
            expected = reference(xi, w[t] - w[others], z[others] - z[t], norm)
        else:
            expected = min(reference(xi, w[k] - w[yi], z[yi] - z[k], norm) for k in range(3) if k != yi)
        assert close(float(result.distance[i]), expected), (i, float(result.distance[i]), expected)
        assert bool(result.feasible[i]) == np.isfinite(expected)


def recheck(model, result, x, y, targets):
    """Witnesses re-run through the model itself in float64."""
    model64 = copy.deepcopy(model).double()
    with torch.no_grad():
        logits = model64(result.x_adv)
    logits = torch.cat([torch.zeros_like(logits), logits], 1) if logits.shape[1] == 1 else logits
    pred = logits.argmax(1)
    ok = (pred != y) if targets is None else (pred == targets)
    assert bool(ok[result.feasible].all())
    assert bool((pred == result.target)[result.feasible].all())
    assert float(result.x_adv.min()) >= 0 and float(result.x_adv.max()) <= 1
    r = (result.x_adv - x.double()).flatten(1)
    size = {"l2": r.norm(dim=1), "linf": r.abs().amax(1), "l1": r.abs().sum(1)}[result.norm]
    # a hair past the boundary: the witness is barely longer than the infimum
    excess = size[result.feasible] - result.distance[result.feasible]
    assert float(excess.min()) >= -1e-12 and float(excess.max()) <= 1e-6


@pytest.mark.parametrize("norm", NORMS)
def test_witnesses_are_adversarial_on_trained_models(norm, logreg_37, embedded_37, softmax_model, embedded):
    for model, data in ((logreg_37, embedded_37), (softmax_model, embedded)):
        x, y = data.test.images[:30], data.test.labels[:30]
        result = minimal_perturbation(model, x, y, norm=norm)
        assert bool(result.feasible.all())
        recheck(model, result, x, y, None)
    x, y = embedded.test.images[:4], embedded.test.labels[:4]
    targets = (y + 1 + torch.arange(4)) % 10
    result = minimal_perturbation(softmax_model, x, y, norm=norm, targets=targets)
    recheck(softmax_model, result, x, y, targets)


def test_norms_are_ordered(softmax_model, embedded):
    """||r||_inf <= ||r||_2 <= ||r||_1 for every r, so the minima are ordered the same way."""
    x, y = embedded.test.images[:30], embedded.test.labels[:30]
    d = {norm: minimal_perturbation(softmax_model, x, y, norm=norm).distance for norm in NORMS}
    assert bool((d["linf"] <= d["l2"] + TOL).all()) and bool((d["l2"] <= d["l1"] + TOL).all())


def test_binary_closed_form_without_active_box():
    """Logistic regression w = [3, -4], x in the middle: d = |w.x + b| / ||w||, r along -w."""
    model = LogisticRegression(2).double()
    with torch.no_grad():
        model.linear.weight.copy_(torch.tensor([[3.0, -4.0]]))
        model.linear.bias.fill_(0.5)
    x = torch.tensor([[0.6, 0.5]], dtype=torch.float64)  # score 1.8 - 2 + 0.5 = 0.3: class 1
    result = minimal_perturbation(model, x, torch.tensor([1]))
    assert abs(float(result.distance[0]) - 0.3 / 5) < 1e-15
    expected = x - 0.3 / 25 * torch.tensor([[3.0, -4.0]], dtype=torch.float64)
    torch.testing.assert_close(result.x_adv, expected, rtol=0, atol=1e-9)
    linf = minimal_perturbation(model, x, torch.tensor([1]), norm="linf")
    l1 = minimal_perturbation(model, x, torch.tensor([1]), norm="l1")
    assert abs(float(linf.distance[0]) - 0.3 / 7) < 1e-15  # eps * (|3| + |-4|) = 0.3
    assert abs(float(l1.distance[0]) - 0.3 / 4) < 1e-15  # all on the largest weight


def test_unreachable_and_already_adversarial():
    model = SoftmaxRegression(2, 3).double()
    with torch.no_grad():
        model.linear.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]))
        model.linear.bias.copy_(torch.tensor([5.0, 0.0, 0.0]))  # class 1 and 2 never beat class 0 in [0,1]^2
    x = torch.tensor([[0.5, 0.5], [0.5, 0.5]], dtype=torch.float64)
    result = minimal_perturbation(model, x, torch.tensor([0, 1]), norm="l2")
    assert not bool(result.feasible[0]) and float(result.distance[0]) == float("inf")
    assert int(result.target[0]) == -1 and torch.equal(result.x_adv[0], x[0])
    assert bool(result.feasible[1]) and float(result.distance[1]) == 0.0  # label 1, predicted 0
    for norm in NORMS:
        targeted = minimal_perturbation(model, x[:1], torch.tensor([0]), norm=norm, targets=torch.tensor([1]))
        assert not bool(targeted.feasible[0]) and float(targeted.distance[0]) == float("inf")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"norm": "l3"}, "norm"),
        ({"targets": torch.tensor([0, 1])}, "differ"),
        ({"targets": torch.tensor([0, 5])}, "targets"),
        ({"slack": 0.0}, "slack"),
    ],
)
def test_bad_input(kwargs, match):
    model = SoftmaxRegression(2, 3).double()
    x = torch.tensor([[0.5, 0.5], [0.1, 0.2]], dtype=torch.float64)
    with pytest.raises(InputError, match=match):
        minimal_perturbation(model, x, torch.tensor([0, 1]), **kwargs)


def test_bad_models_and_data():
    x = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    with pytest.raises(InputError, match="nn.Linear"):
        minimal_perturbation(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2)), x, torch.tensor([0]))
    with pytest.raises(InputError, match="bounds"):
        minimal_perturbation(SoftmaxRegression(2, 3), x + 1, torch.tensor([0]))
    with pytest.raises(InputError, match="features"):
        minimal_perturbation(SoftmaxRegression(3, 3), x, torch.tensor([0]))
