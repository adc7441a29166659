"""Branch and bound decides like the exact MILP, never calls a broken point robust, and every
counterexample it returns is one the float64 model misclassifies inside the ball."""

from __future__ import annotations

import copy
import functools
import sys
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advlab.attacks import PGD
from advlab.attacks.witness import into_ball
from advlab.exact import certify, minimal_linf, relu_network
from advlab.exact.bab import BabSettings, branch_and_bound, search
from advlab.exact.specs import goals, robustness_property
from tests.exact.nets import conv_net, random_mlp, scaled_mlp
from tests.exact.test_certify import _between

bab_module = sys.modules["advlab.exact.bab"]


def _check(model64: torch.nn.Module, x: torch.Tensor, label: int, eps: float):
    def check(point: torch.Tensor) -> torch.Tensor | None:
        point = into_ball(point, x, eps, (0.0, 1.0))
        return point if int(model64(point[None]).argmax(1)) != label else None
    return check


def _decide(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, eps: float, settings_: BabSettings) -> list:
    model64 = copy.deepcopy(model).double()
    net = relu_network(model64, (x.shape[1],))
    out = []
    for xi, label in zip(x.double(), labels.tolist()):
        outcome = branch_and_bound(net, xi, label, eps, (0.0, 1.0), time_limit=60, check=_check(model64, xi, label, eps),
                                   settings=settings_)
        if outcome.status == "counterexample":
            p = outcome.point
            assert float((p - xi).abs().max()) <= eps and bool(((p >= 0) & (p <= 1)).all())
            assert int(model64(p[None]).argmax(1)) != label
        out.append(outcome)
    return out


# beta-CROWN as used by certify on the 12-16-16-3 net; bounds without optimisation on a
# 12-6-5-3 net, where the LP leaves (every ReLU split) decide
# (and with the hidden layers re-bounded after each split)
CASES = [(BabSettings(batch=16), None), (BabSettings(batch=16, refine=True, max_splits=1), None),
         (BabSettings(batch=16, steps=0, root_steps=0), (12, 6, 5, 3))]


@pytest.mark.parametrize("seed", [0, 3, 5])
@pytest.mark.parametrize("settings_, widths", CASES, ids=["beta", "beta-refined", "plain-leaves"])
def test_decides_like_the_exact_minimal_distances(seed: int, settings_: BabSettings, widths) -> None:
    model = scaled_mlp(seed) if widths is None else random_mlp(seed, widths, scale=3.0)
    x = torch.rand(10, 12, generator=torch.Generator().manual_seed(seed))
    y = model(x).argmax(1)
    exact = minimal_linf(model, x, y, time_limit=30)
    assert set(exact.status) <= {"optimal", "unreachable"}
    for eps in (_between(exact.lower), float(exact.lower.max()) * 0.9):
        outcomes = _decide(model, x, y, eps, settings_)
        for i, outcome in enumerate(outcomes):
            if exact.lower[i] > eps * (1 + 1e-6):
                assert outcome.status == "robust", (i, outcome)
            elif exact.upper[i] < eps * (1 - 1e-6):
                assert outcome.status == "counterexample", (i, outcome)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), widths=st.lists(st.integers(3, 12), min_size=1, max_size=3),
       eps=st.floats(0.02, 0.3))
def test_never_robust_where_an_attack_or_a_sample_breaks(seed: int, widths: list[int], eps: float) -> None:
    model = random_mlp(seed, (8, *widths, 4), scale=2.5)
    x = torch.rand(6, 8, generator=torch.Generator().manual_seed(seed))
    y = model(x).argmax(1)
    outcomes = _decide(model, x, y, eps, BabSettings(batch=8, steps=5, root_steps=5))
    robust = torch.tensor([o.status == "robust" for o in outcomes])
    pgd = PGD(model, eps=eps, steps=50, restarts=3, loss="margin", seed=seed)(x, y)
    assert not bool((robust & pgd.success).any())
    gen = torch.Generator().manual_seed(seed)
    samples = (x.unsqueeze(1) + eps * (2 * torch.rand(6, 500, 8, generator=gen) - 1)).clamp(0, 1)
    samples[:, :100] = (x.unsqueeze(1) + eps * torch.randint(0, 2, (6, 100, 8), generator=gen) * 2 - eps).clamp(0, 1)
    with torch.no_grad():
        wrong = (model(samples.reshape(-1, 8)).argmax(1).reshape(6, 500) != y.unsqueeze(1)).any(1)
    assert not bool((robust & wrong).any())
    assert all(o.status != "unknown" for o in outcomes)


def test_domain_cap_gives_unknown_and_certify_hands_the_rest_to_the_milp(monkeypatch) -> None:
    model = scaled_mlp(3)
    x = torch.rand(10, 12, generator=torch.Generator().manual_seed(3))
    y = model(x).argmax(1)
    capped = BabSettings(batch=1, steps=0, root_steps=0, max_domains=0)
    outcomes = _decide(model, x, y, 0.08, capped)
    unknown = [o for o in outcomes if o.status == "unknown"]
    assert unknown and all("sub-domains" in o.reason for o in unknown)
    exact = minimal_linf(model, x, y, time_limit=30)
    module = sys.modules["advlab.exact.certify"]  # the package exports the function under the same name
    monkeypatch.setattr(module, "branch_and_bound", functools.partial(branch_and_bound, settings=capped))
    result = certify(model, x, y, eps=0.08, attack=False, alpha_steps=0, progress=False)
    assert "milp" in result.method  # counterexamples found before the cap stay with bab
    assert all(s == "broken" for s, m in zip(result.status, result.method) if m == "bab")
    assert any("MILP gets the rest" in note for note in result.notes)
    for i, status in enumerate(result.status):
        assert (status in ("certified", "verified")) == bool(exact.lower[i] > 0.08), (i, status)


def _goal_search(net, xl, xu, rows, offsets, model64, prop):
    def check(point: torch.Tensor) -> torch.Tensor | None:
        with torch.no_grad():
            ok = bool(prop.inside(point[None])) and bool(prop.violated(model64(point[None])))
        return point if ok else None
    return search(net, xl, xu, rows, offsets, time_limit=60, check=check, settings=BabSettings(batch=16, steps=5, root_steps=5))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("float32", [True, False], ids=["float32-steps", "float64"])
def test_one_search_over_all_goals_agrees_with_one_search_per_goal(seed: int, float32: bool, monkeypatch) -> None:
    """unsat needs every goal proven: the joint search is robust iff each goal's own search is,
    and finds a (confirmed) counterexample iff some goal's does; with or without the float32
    optimisation steps."""
    if not float32:
        monkeypatch.setattr(bab_module, "_single", lambda net: None)
    model = random_mlp(seed, (6, 12, 10, 5), scale=2.0)
    model64 = copy.deepcopy(model).double()
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(6, generator=g, dtype=torch.float64)
    label = int(model64(x[None]).argmax(1))
    prop = robustness_property(x, label, 0.05 + 0.1 * (seed % 3), (0.0, 1.0), 5)
    net = relu_network(model64, (6,))
    rows, offsets = goals(prop)
    joint = _goal_search(net, prop.lower, prop.upper, rows, offsets, model64, prop)
    single = [_goal_search(net, prop.lower, prop.upper, rows[i : i + 1], offsets[i : i + 1], model64, prop)
              for i in range(len(rows))]
    assert joint.status != "unknown" and all(s.status != "unknown" for s in single)
    assert (joint.status == "robust") == all(s.status == "robust" for s in single)
    if joint.status == "counterexample":
        with torch.no_grad():
            assert bool(prop.violated(model64(joint.point[None]))) and bool(prop.inside(joint.point[None]))


@pytest.mark.parametrize("network", ["mlp", "cnn"])
def test_time_limit_bounds_the_search_within_half_a_second(network: str) -> None:
    """The deadline is checked inside each round's optimisation: a search that cannot finish
    (every candidate rejected) stops within 0.5 s of its limit, on a dense net and on one with
    convolutions and max-pooling."""
    if network == "mlp":
        model, shape, n = random_mlp(1, (30, 64, 64, 64, 10), scale=1.0), (30,), 30
    else:
        model, shape, n = conv_net(3, channels=4), (1, 8, 8), 64
    net = relu_network(copy.deepcopy(model).double(), shape)
    classes = int(model(torch.zeros(1, *shape)).shape[1])
    eye = torch.eye(classes, dtype=torch.float64)
    rows = torch.stack([eye[0] - eye[k] for k in range(1, classes)]).unsqueeze(1)
    start = time.perf_counter()
    outcome = search(net, torch.zeros(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64), rows,
                     torch.zeros(classes - 1, 1, dtype=torch.float64), time_limit=1.0, check=lambda p: None)
    elapsed = time.perf_counter() - start
    assert outcome.status == "unknown" and outcome.reason == "time limit"
    assert elapsed < 1.5, elapsed
