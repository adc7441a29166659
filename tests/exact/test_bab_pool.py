"""Branch and bound on networks with max-pool layers (ReLU splits only, the pools keep their
relaxation): it decides like the exact MILP, which encodes max-pool with binaries, never calls
a point robust that an attack or a sample breaks, returns only counterexamples the float64
model confirms, and stops at its time limit."""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from advlab.attacks import PGD
from advlab.attacks.witness import into_ball
from advlab.exact import certify, minimal_linf, relu_network
from advlab.exact.bab import BabSettings, branch_and_bound, supports
from advlab.exact.branching import pool_gain, split_bounds
from advlab.exact.bounds import box, hidden_bounds
from advlab.exact.operators import MaxPool, Relu
from tests.exact.nets import conv_net

bab_module = sys.modules["advlab.exact.bab"]


def pool_net(seed: int, *, channels: int = 2, hidden: int = 6, scale: float = 3.0) -> nn.Module:
    """1x6x6 -> 3 classes: conv 3x3, ReLU, max-pool 2, linear, ReLU, linear (weights scaled so
    that decision boundaries are near the inputs)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, channels, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * channels, hidden), nn.ReLU(), nn.Linear(hidden, 3)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model


def _check(model64: nn.Module, x: torch.Tensor, label: int, eps: float):
    def check(point: torch.Tensor) -> torch.Tensor | None:
        point = into_ball(point, x, eps, (0.0, 1.0))
        with torch.no_grad():
            wrong = int(model64(point.reshape(1, *model64.shape)).argmax(1)) != label
        return point if wrong else None
    return check


def _decide(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, eps: float, settings_: BabSettings,
            time_limit: float = 60) -> list:
    """branch_and_bound on every example; each counterexample is checked here in float64."""
    model64 = copy.deepcopy(model).double()
    model64.shape = tuple(x.shape[1:])
    net = relu_network(model64, tuple(x.shape[1:]))
    assert any(isinstance(g, MaxPool) for g in net.nonlinear)
    out = []
    for xi, label in zip(x.double(), labels.tolist()):
        flat = xi.flatten()
        outcome = branch_and_bound(net, flat, label, eps, (0.0, 1.0), time_limit=time_limit,
                                   check=_check(model64, flat, label, eps), settings=settings_)
        if outcome.status == "counterexample":
            p = outcome.point
            assert float((p - flat).abs().max()) <= eps and bool(((p >= 0) & (p <= 1)).all())
            with torch.no_grad():
                assert int(model64(p.reshape(1, *xi.shape)).argmax(1)) != label
        out.append(outcome)
    return out


def _between(distances: torch.Tensor) -> float:
    d = distances[distances.isfinite()].sort().values
    mid = len(d) // 2
    return float(d[mid - 1] + d[mid]) / 2


def test_max_pool_nets_are_branched() -> None:
    assert supports(relu_network(conv_net(0), (1, 8, 8)))
    assert supports(relu_network(pool_net(0), (1, 6, 6)))


# as certify runs it (these nets are small: the MILP decides at the root); beta-CROWN bounds
# with the MILP only for sub-domains of at most 8 unstable ReLUs (the bounds and splits do most
# of the work; complete=False: may stop undecided at 500 open sub-domains), without and with
# the hidden layers re-bounded after each split
DEFAULT, BETA = BabSettings(batch=16), BabSettings(batch=16, milp_unstable=8, max_domains=500)
REFINED = BabSettings(batch=16, milp_unstable=8, refine=True, max_splits=1, max_domains=500)
CASES = [(seed, DEFAULT, True) for seed in (0, 4, 7)] + [(seed, BETA, False) for seed in (0, 4)] + [(0, REFINED, False)]


@pytest.mark.parametrize("seed, settings_, complete", CASES,
                         ids=["default-0", "default-4", "default-7", "beta-0", "beta-4", "beta-refined-0"])
def test_decides_like_the_exact_minimal_distances(seed: int, settings_: BabSettings, complete: bool) -> None:
    model = pool_net(seed)
    x = torch.rand(8, 1, 6, 6, generator=torch.Generator().manual_seed(seed))
    y = model(x).argmax(1)
    exact = minimal_linf(model, x, y, time_limit=30)
    assert set(exact.status) <= {"optimal", "unreachable"}
    decided = 0
    for eps in (_between(exact.lower), float(exact.lower[exact.lower.isfinite()].max()) * 0.9):
        outcomes = _decide(model, x, y, eps, settings_)
        for i, outcome in enumerate(outcomes):
            if outcome.status == "robust":
                assert exact.lower[i] > eps * (1 - 1e-6), (i, outcome, float(exact.lower[i]), eps)
            if outcome.status == "counterexample":
                assert exact.upper[i] >= 0 and exact.lower[i] <= eps, (i, outcome, float(exact.lower[i]), eps)
            if complete and exact.lower[i] > eps * (1 + 1e-6):
                assert outcome.status == "robust", (i, outcome, float(exact.lower[i]), eps)
            elif complete and exact.upper[i] < eps * (1 - 1e-6):
                assert outcome.status == "counterexample", (i, outcome, float(exact.upper[i]), eps)
            decided += outcome.status != "unknown"
    assert decided >= (16 if complete else 4)


def test_leaves_go_to_the_milp_on_max_pool_nets(monkeypatch) -> None:
    """Without optimisation the search reaches sub-domains with at most 4 unstable ReLUs; there
    (the pools are not split) the MILP over the sub-domain decides them."""
    calls = []
    original = bab_module.milp_leaf
    monkeypatch.setattr(bab_module, "milp_leaf", lambda *a, **k: calls.append(1) or original(*a, **k))
    model = pool_net(4)
    x = torch.rand(8, 1, 6, 6, generator=torch.Generator().manual_seed(4))
    y = model(x).argmax(1)
    exact = minimal_linf(model, x, y, time_limit=30)
    eps = _between(exact.lower)
    outcomes = _decide(model, x, y, eps, BabSettings(batch=16, steps=0, root_steps=0, milp_unstable=4))
    assert calls and all(o.status != "unknown" for o in outcomes)
    for i, outcome in enumerate(outcomes):
        assert (outcome.status == "robust") == bool(exact.lower[i] > eps), (i, outcome)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), channels=st.integers(1, 3), eps=st.floats(0.02, 0.25))
def test_never_robust_where_an_attack_or_a_sample_breaks(seed: int, channels: int, eps: float) -> None:
    model = pool_net(seed, channels=channels, scale=2.5)
    x = torch.rand(5, 1, 6, 6, generator=torch.Generator().manual_seed(seed))
    y = model(x).argmax(1)
    outcomes = _decide(model, x, y, eps, BabSettings(batch=8, steps=5, root_steps=5, milp_unstable=8), time_limit=10)
    robust = torch.tensor([o.status == "robust" for o in outcomes])
    pgd = PGD(model, eps=eps, steps=50, restarts=3, loss="margin", seed=seed)(x, y)
    assert not bool((robust & pgd.success).any())
    gen = torch.Generator().manual_seed(seed)
    samples = (x.unsqueeze(1) + eps * (2 * torch.rand(5, 400, 1, 6, 6, generator=gen) - 1)).clamp(0, 1)
    samples[:, :100] = (x.unsqueeze(1) + eps * (2 * torch.randint(0, 2, (5, 100, 1, 6, 6), generator=gen) - 1)).clamp(0, 1)
    with torch.no_grad():
        wrong = (model(samples.reshape(-1, 1, 6, 6)).argmax(1).reshape(5, 400) != y.unsqueeze(1)).any(1)
    assert not bool((robust & wrong).any())


def test_certify_settles_a_cnn_by_branch_and_bound_like_the_exact_distances() -> None:
    """certify's complete step on the two-pool conv net is branch and bound (no MILP), and its
    verdicts match the exact minimal distances."""
    model = conv_net(2)
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    y = model(x).argmax(1)
    exact = minimal_linf(model, x, y, time_limit=60)
    assert set(exact.status) <= {"optimal", "unreachable"}
    eps = _between(exact.lower)
    result = certify(model, x, y, eps=eps, time_limit=30, attack=False, alpha_steps=0, progress=False)
    assert "milp" not in result.method and "bab" in result.method
    for i, status in enumerate(result.status):
        assert (status in ("certified", "verified")) == bool(exact.lower[i] > eps), (i, status)
    broken = torch.tensor([s == "broken" for s in result.status])
    with torch.no_grad():
        pred = copy.deepcopy(model).double()(result.counterexample[broken]).argmax(1)
    assert bool((pred != y[broken]).all())
    assert bool(((result.counterexample[broken] - x[broken].double()).flatten(1).abs().amax(1) <= eps).all())


def test_a_split_relu_tightens_the_pool_it_feeds() -> None:
    """Inactive: the pool's input is 0 exactly; active: its lower bound is the ReLU's, >= 0."""
    net = relu_network(pool_net(1), (1, 6, 6))
    x = torch.rand(1, 36, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    xl, xu = box(x, 0.3, (0.0, 1.0))
    hidden = hidden_bounds(net, xl, xu)
    assert isinstance(net.nonlinear[0], Relu) and isinstance(net.nonlinear[1], MaxPool) and not net.affines[1].ops
    lo, up = hidden[0]
    j = int(((lo < 0) & (up > 0)).nonzero()[0, 1])
    signs = [torch.zeros(2, lo.shape[1], dtype=torch.int8), None, torch.zeros(2, hidden[2][0].shape[1], dtype=torch.int8)]
    signs[0][0, j], signs[0][1, j] = -1, 1
    split = split_bounds(net, [(a.expand(2, -1), b.expand(2, -1)) for a, b in hidden], signs)
    pool_lo, pool_up = split[1]
    assert float(pool_lo[0, j]) == 0.0 and float(pool_up[0, j]) == 0.0
    assert float(pool_up[1, j]) == float(up[0, j]) and float(pool_lo[1, j]) == 0.0
    assert bool((split[0][1][0] <= 0)[j]) and bool((split[0][0][1] >= 0)[j])


def test_pool_scores_point_at_the_relu_that_sets_an_open_window_constant() -> None:
    """A window whose largest upper bound U comes from an unstable ReLU: splitting that ReLU
    inactive lowers the pool's constant by U - U2, and its score carries lam+ (U - U2) / U of
    the window's constant."""
    pool = MaxPool(torch.tensor([[0, 1, 2, 3]]))
    lower = torch.tensor([[0.0, 0.0, 0.1, 0.0]], dtype=torch.float64)
    upper = torch.tensor([[2.0, 0.5, 0.4, 0.0]], dtype=torch.float64)
    relax = pool.relaxation(lower, upper)
    lam = torch.tensor([[[3.0]]], dtype=torch.float64)
    gain = pool_gain(pool, (lower, upper), relax.intercepts(lam))
    assert torch.allclose(gain, torch.tensor([[[3.0 * (2.0 - 0.5), 0.0, 0.0, 0.0]]], dtype=torch.float64))
