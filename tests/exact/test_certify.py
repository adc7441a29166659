"""The robust-accuracy bracket: never calls a broken point robust, agrees with the exact
minimal distances, and every counterexample is re-checked by the model."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from advlab.attacks import PGD
from advlab.errors import InputError
from advlab.exact import certify, minimal_linf
from advlab.models import as_multiclass_logits
from tests.exact.nets import conv_net, scaled_mlp


def _check_counterexamples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, result, eps: float) -> None:
    broken = torch.tensor([s == "broken" for s in result.status])
    points = result.counterexample[broken]
    assert points.dtype == torch.float64
    assert bool(((points - x[broken].double()).flatten(1).abs().amax(1) <= eps).all())
    assert bool(((points >= 0) & (points <= 1)).all())
    with torch.no_grad():
        pred = as_multiclass_logits(copy.deepcopy(model).double()(points)).argmax(1)
    assert bool((pred != y[broken]).all())


def _between(distances: torch.Tensor) -> float:
    """An eps halfway between the two middle distances (no example sits on it)."""
    d = distances[distances.isfinite()].sort().values
    mid = len(d) // 2
    return float(d[mid - 1] + d[mid]) / 2


@pytest.mark.parametrize("seed", [0, 3])
def test_bracket_matches_the_exact_minimal_distances(seed: int) -> None:
    model = scaled_mlp(seed)
    x = torch.rand(12, 12, generator=torch.Generator().manual_seed(seed))
    y = model(x).argmax(1)
    y[0] = (y[0] + 1) % 3  # one misclassified example
    exact = minimal_linf(model, x, y, time_limit=30)
    assert set(exact.status) <= {"optimal", "misclassified", "unreachable"}
    eps = _between(exact.lower[exact.lower > 0])
    result = certify(model, x, y, eps=eps, time_limit=30, progress=False)
    assert result.status[0] == "misclassified"
    for i, status in enumerate(result.status[1:], start=1):
        if exact.lower[i] > eps * (1 + 1e-6):
            assert status in ("certified", "verified"), (i, status)
        elif exact.upper[i] < eps * (1 - 1e-6):
            assert status == "broken", (i, status)
    assert result.certified_share == result.not_broken_share  # nothing unknown
    lo, hi = result.bracket()
    assert lo == pytest.approx(float((exact.lower > eps).double().mean()))
    _check_counterexamples(model, x, y, result, eps)


@pytest.mark.parametrize("bab", [True, False])
def test_complete_verification_alone_decides_every_point_like_the_exact_distances(bab: bool) -> None:
    """Without the attack every broken point is a branch-and-bound or decision-MILP counterexample."""
    model = scaled_mlp(5)
    x = torch.rand(8, 12, generator=torch.Generator().manual_seed(5))
    y = model(x).argmax(1)
    exact = minimal_linf(model, x, y, time_limit=30)
    eps = _between(exact.lower)
    result = certify(model, x, y, eps=eps, time_limit=30, attack=False, progress=False, bab=bab)
    for i, status in enumerate(result.status):
        assert (status in ("certified", "verified")) == bool(exact.lower[i] >= eps), (i, status, exact.lower[i], eps)
    assert "attack" not in result.method
    assert ("bab" if bab else "milp") in result.method and ("milp" if bab else "bab") not in result.method
    _check_counterexamples(model, x, y, result, eps)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_never_robust_where_pgd_breaks_on_conv_nets(pool: str) -> None:
    model = conv_net(1, pool=pool)
    x = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(1)
    eps = 0.03
    result = certify(model, x, y, eps=eps, time_limit=20, attack=False, progress=False)
    pgd = PGD(model, eps=eps, steps=100, restarts=5, loss="margin", seed=1)(x, y)
    robust = torch.tensor([s in ("certified", "verified") for s in result.status])
    assert not bool((robust & pgd.success).any())
    _check_counterexamples(model, x, y, result, eps)
    assert result.counts()["unknown"] == 0


def test_unsupported_layer_leaves_bounds_out_but_still_attacks() -> None:
    model = nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 3)).eval()
    x = torch.rand(6, 12, generator=torch.Generator().manual_seed(2))
    y = model(x).argmax(1)
    result = certify(model, x, y, eps=0.5, progress=False)
    assert "Tanh" in result.notes[0]
    assert set(result.status) <= {"broken", "unknown"}
    assert result.certified_share == 0.0
    summary = result.summary()
    assert summary["n"] == 6 and sum(summary["counts"].values()) == 6


@pytest.mark.parametrize("eps", [-0.1, float("nan"), 2.0])
def test_bad_eps_is_refused(eps: float) -> None:
    with pytest.raises(InputError, match="eps"):
        certify(scaled_mlp(0), torch.rand(2, 12), torch.zeros(2, dtype=torch.long), eps=eps, progress=False)


def test_decision_agrees_with_minimal_distance_on_a_max_pool_net() -> None:
    """Both MILPs encode max-pool with binaries; their answers must agree, and the minimal
    distance's witness must be a point the model misclassifies."""
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3)
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)
    x = torch.rand(8, 1, 6, 6, generator=torch.Generator().manual_seed(4))
    y = model(x).argmax(1)
    exact = minimal_linf(model, x, y, time_limit=30)
    assert set(exact.status) <= {"optimal", "unreachable"}
    with torch.no_grad():
        assert bool((model(exact.witness[exact.upper.isfinite()]).argmax(1) != y[exact.upper.isfinite()]).all())
    eps = _between(exact.lower)
    result = certify(model, x, y, eps=eps, time_limit=30, attack=False, progress=False)
    for i, status in enumerate(result.status):
        assert (status in ("certified", "verified")) == bool(exact.lower[i] > eps), (i, status)
    _check_counterexamples(model, x, y, result, eps)
