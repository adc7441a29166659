"""Exact minimal L-inf distances by MILP: closed forms for linear models, exhaustive search on
tiny ReLU networks (no closer point is misclassified, the witness is), and input checks."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from advlab.attacks import MinPGD
from advlab.errors import InputError
from advlab.exact import MinimalDistances, UnsupportedModelError, minimal_linf, minimal_perturbation
from advlab.models import MLP, LogisticRegression, Normalize, SoftmaxRegression, as_multiclass_logits
from tests.exact.nets import scaled_mlp


def _net(widths: tuple[int, ...], seed: int) -> MLP:
    torch.manual_seed(seed)
    return MLP(widths[0], widths[1:-1], widths[-1]).eval()


def _steep_net(widths: tuple[int, ...], seed: int) -> MLP:
    """A random ReLU net whose first-layer units are steep and centred inside the box, so its
    decision regions are many and small (default initialisation often gives one class only)."""
    model = _net(widths, seed)
    with torch.no_grad():
        model.fc1.weight *= 8
        centres = torch.rand(widths[1], widths[0], generator=torch.Generator().manual_seed(seed))
        model.fc1.bias.copy_(-(model.fc1.weight * centres).sum(1))
    return model


def _logits64(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return as_multiclass_logits(copy.deepcopy(model).double()(x.double()))


def _check_witnesses(model: nn.Module, x: torch.Tensor, y: torch.Tensor, result: MinimalDistances) -> None:
    """Every finite upper bound is the distance of an input in the box the model misclassifies."""
    has = torch.isfinite(result.upper) & (result.upper > 0)
    w = result.witness[has]
    assert w.dtype == x.dtype and result.witness.shape == x.shape
    assert bool(((w >= 0) & (w <= 1)).all())
    distance = (w.double() - x[has].double()).flatten(1).abs().amax(1)
    assert torch.allclose(distance, result.upper[has], rtol=0, atol=1e-12)
    pred = _logits64(model, w).argmax(1)
    assert bool((pred != y[has]).all())
    assert torch.equal(pred, result.target[has])
    assert bool((result.lower <= result.upper).all())


def _closer_points_keep_label(model: nn.Module, x: torch.Tensor, y: torch.Tensor, radius: torch.Tensor) -> None:
    """Search the L-inf ball of `radius` (in the box) hard: random points, its corners, and a
    targeted PGD towards every class from random starts. All must keep label y."""
    model64 = copy.deepcopy(model).double()
    gen = torch.Generator().manual_seed(0)
    n, d = x.shape
    if n == 0:
        return
    num_classes = _logits64(model, x[:1]).shape[1]
    r = radius.view(-1, 1, 1)
    x64 = x.double().unsqueeze(1)
    corners = torch.tensor(np.array(np.meshgrid(*[[-1.0, 1.0]] * d)).reshape(d, -1).T) if d <= 8 else torch.empty(0, d)
    uniform = 2 * torch.rand(n, 4000, d, generator=gen, dtype=torch.float64) - 1
    samples = torch.cat([uniform, corners.expand(n, -1, -1)], 1)
    points = (x64 + r * samples).clamp(0, 1)
    pred = as_multiclass_logits(model64(points.reshape(-1, d)).detach()).argmax(1).view(n, -1)
    assert bool((pred == y.view(-1, 1)).all()), "a point inside the proven radius is misclassified"
    for target in range(num_classes):
        start = (x64 + r * (2 * torch.rand(n, 64, d, generator=gen, dtype=torch.float64) - 1)).clamp(0, 1)
        adv, labels = start.reshape(-1, d), y.repeat_interleave(64)
        centre, rr = x64.expand(-1, 64, -1).reshape(-1, d), r.expand(-1, 64, -1).reshape(-1, 1)
        for _ in range(60):
            adv.requires_grad_(True)
            z = as_multiclass_logits(model64(adv))
            loss = (z.gather(1, labels[:, None]) - z[:, target : target + 1]).sum()
            (grad,) = torch.autograd.grad(loss, adv)
            adv = (centre + (adv.detach() - 0.1 * rr * grad.sign() - centre).clamp(-rr, rr)).clamp(0, 1)
        pred = as_multiclass_logits(model64(adv).detach()).argmax(1)
        assert bool((pred == labels).all()), f"PGD towards class {target} got inside the proven radius"


def _correct(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return _logits64(model, x).argmax(1)


# ---- linear models: the closed form ------------------------------------------------------------
def _linear_min_linf(a: np.ndarray, c: float, x: np.ndarray) -> float:
    """Smallest eps with max of a.x' + c over |x' - x|_inf <= eps, x' in [0, 1]^n at least 0.

    The maximum is a.x + c + sum_i |a_i| min(eps, room_i), room_i the distance from x_i to the
    box face a_i points at: increasing and piecewise linear in eps, so walk its breakpoints."""
    need = -(a @ x + c)
    if need <= 0:
        return 0.0
    room = np.where(a > 0, 1.0 - x, x)
    order = np.argsort(room)
    room, weight = room[order], np.abs(a)[order]
    gained, slope, previous = 0.0, weight.sum(), 0.0
    for r, w in zip(room, weight):
        if slope > 0 and gained + slope * (r - previous) >= need:
            return previous + (need - gained) / slope
        gained += slope * (r - previous)
        slope -= w
        previous = r
    return math.inf


def test_softmax_regression_matches_the_closed_form() -> None:
    torch.manual_seed(1)
    model = SoftmaxRegression(in_features=6, num_classes=4).double().eval()
    x = torch.rand(12, 6, dtype=torch.float64)
    y = _correct(model, x)
    result = minimal_linf(model, x, y, time_limit=30)
    w, b = model.linear.weight.detach().numpy(), model.linear.bias.detach().numpy()
    for i in range(len(x)):
        label = int(y[i])
        expected = min(
            _linear_min_linf(w[k] - w[label], b[k] - b[label], x[i].numpy()) for k in range(4) if k != label
        )
        assert result.status[i] == "optimal"
        assert result.lower[i].item() == pytest.approx(expected, rel=2e-5, abs=1e-6)
        assert result.upper[i].item() == pytest.approx(expected, rel=2e-5, abs=1e-6)
    _check_witnesses(model, x, y, result)
    reference = minimal_perturbation(model, x, y, norm="linf").distance  # advlab's own closed form
    assert torch.allclose(result.lower, reference, rtol=2e-5, atol=1e-6)


def test_logistic_regression_matches_the_closed_form() -> None:
    """Binary: the logit z = w.x + b is read as logits [0, z]; flipping label 1 needs -w.x' - b >= 0."""
    torch.manual_seed(2)
    model = LogisticRegression(in_features=5).eval()
    x = torch.rand(10, 5)
    y = _correct(model, x)
    result = minimal_linf(model, x, y, time_limit=30)
    w, b = model.linear.weight.detach().double().numpy()[0], float(model.linear.bias.detach())
    for i in range(len(x)):
        sign = 1.0 if int(y[i]) == 0 else -1.0  # class 0 needs z <= 0, class 1 needs z >= 0 to be beaten
        expected = _linear_min_linf(sign * w, sign * b, x[i].double().numpy())
        assert result.lower[i].item() == pytest.approx(expected, rel=2e-5, abs=1e-6)
        assert result.upper[i].item() == pytest.approx(expected, rel=2e-5, abs=1e-6)
    _check_witnesses(model, x, y, result)


# ---- small ReLU networks: exhaustive search around the optimum ---------------------------------
def test_tiny_relu_network_optimum_is_confirmed_by_search() -> None:
    model = _net((4, 8, 8, 3), seed=0)
    x = torch.rand(10, 4, generator=torch.Generator().manual_seed(0))
    y = _correct(model, x)
    result = minimal_linf(model, x, y, time_limit=30)
    assert result.status == ["optimal"] * len(x)
    assert bool((result.upper - result.lower <= 1e-6 + 1e-5 * result.upper).all())
    _check_witnesses(model, x, y, result)
    _closer_points_keep_label(model, x, y, (1 - 1e-3) * result.lower)


def test_two_dimensional_network_against_a_fine_grid() -> None:
    """In 2-D the whole box can be enumerated: the closest misclassified grid point lies at
    eps* up to the grid spacing, and no grid point closer than eps* is misclassified."""
    model = _steep_net((2, 16, 16, 3), seed=2)
    x = torch.tensor([[0.3, 0.6], [0.7, 0.2], [0.5, 0.5], [0.1, 0.9]])
    y = _correct(model, x)
    result = minimal_linf(model, x, y, time_limit=30)
    h = 1 / 1000
    axis = torch.arange(0, 1 + h / 2, h, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    pred = _logits64(model, grid).argmax(1)
    for i in range(len(x)):
        distance = (grid - x[i].double()).abs().amax(1)[pred != y[i]]
        if result.status[i] == "unreachable":
            assert distance.numel() == 0
            continue
        assert result.status[i] == "optimal"
        assert result.lower[i].item() <= float(distance.min()) <= result.upper[i].item() + 2 * h
    _check_witnesses(model, x, y, result)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), width=st.integers(2, 10))
def test_property_bounds_bracket_and_witnesses_hold(seed: int, width: int) -> None:
    model = _steep_net((3, width, width, 4), seed=seed)
    x = torch.rand(4, 3, generator=torch.Generator().manual_seed(seed))
    y = _correct(model, x)
    result = minimal_linf(model, x, y, time_limit=30)
    _check_witnesses(model, x, y, result)
    for i, status in enumerate(result.status):
        assert status in ("optimal", "unreachable"), status
        if status == "unreachable":  # the label covers the whole box
            assert math.isinf(result.lower[i].item()) and result.target[i].item() == -1
    finite = torch.isfinite(result.lower)
    _closer_points_keep_label(model, x[finite], y[finite], (1 - 1e-3) * result.lower[finite])


def test_leading_normalize_is_folded_into_the_first_layer() -> None:
    torch.manual_seed(4)
    mean, std = [0.2, 0.5], [0.3, 0.25]
    body = nn.Sequential(nn.Flatten(), nn.Linear(8, 10), nn.ReLU(), nn.Linear(10, 3))
    model = nn.Sequential(Normalize(mean, std), body).eval()
    x = torch.rand(5, 2, 2, 2, generator=torch.Generator().manual_seed(4))
    y = _correct(model, x)
    result = minimal_linf(model, x, y, time_limit=30)
    assert result.status == ["optimal"] * len(x) and result.witness.shape == x.shape
    _check_witnesses(model, x, y, result)
    # the same network with the normalisation written into its first layer
    scale = (1 / torch.tensor(std)).repeat_interleave(4)
    shift = -(torch.tensor(mean) / torch.tensor(std)).repeat_interleave(4)
    folded = copy.deepcopy(body)
    with torch.no_grad():
        folded[1].bias += folded[1].weight @ shift
        folded[1].weight *= scale
    again = minimal_linf(folded, x, y, time_limit=30)
    assert torch.allclose(again.lower, result.lower, rtol=1e-4, atol=1e-6)


def test_misclassified_unreachable_and_batched_shapes() -> None:
    model = _net((4, 6, 3), seed=5)
    x = torch.rand(3, 4, generator=torch.Generator().manual_seed(5))
    pred = _correct(model, x)
    wrong = (pred + 1) % 3
    result = minimal_linf(model, x, wrong, time_limit=30)
    assert result.status == ["misclassified"] * 3
    assert torch.equal(result.lower, torch.zeros(3, dtype=torch.float64)) and torch.equal(result.witness, x)
    assert torch.equal(result.target, pred)

    constant = nn.Sequential(nn.Linear(4, 3))
    with torch.no_grad():
        constant[0].weight.zero_()
        constant[0].bias.copy_(torch.tensor([0.0, 1.0, 0.0]))
    result = minimal_linf(constant, x, torch.ones(3, dtype=torch.long), time_limit=30)
    assert result.status == ["unreachable"] * 3
    assert bool(torch.isinf(result.lower).all() and torch.isinf(result.upper).all())
    summary = result.summary()
    assert summary["n"] == 3 and summary["proven"] == 1.0 and summary["status_counts"] == {"unreachable": 3}


def test_time_limit_keeps_valid_bounds() -> None:
    """Stopped before any MILP: the lower bound is the relaxation's, the upper the attack's."""
    model = _net((20, 40, 40, 5), seed=6)
    x = torch.rand(3, 20, generator=torch.Generator().manual_seed(6))
    y = _correct(model, x)
    result = minimal_linf(model, x, y, time_limit=1e-9)
    assert set(result.status) <= {"time_limit", "optimal"} and "time_limit" in result.status
    _check_witnesses(model, x, y, result)
    assert bool(torch.isfinite(result.upper).all())
    _closer_points_keep_label(model, x, y, (1 - 1e-3) * result.lower)


# ---- input checks -----------------------------------------------------------------------------
@pytest.mark.parametrize("time_limit", [0.0, -1.0, math.nan])
def test_time_limit_must_be_positive(time_limit: float) -> None:
    model = _net((4, 5, 3), seed=0)
    with pytest.raises(InputError, match="time_limit"):
        minimal_linf(model, torch.rand(2, 4), torch.zeros(2, dtype=torch.long), time_limit=time_limit)


@pytest.mark.parametrize(
    ("model", "shape", "message"),
    [
        (MLP(4, (5,), 3, activation="sigmoid"), (2, 4), "Sigmoid"),
        (nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3)), (2, 4), "BatchNorm1d"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(8, 3)), (2, 1, 4, 4), "Tanh"),
    ],
)
def test_unsupported_networks_are_rejected(model: nn.Module, shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(UnsupportedModelError, match=message):
        minimal_linf(model, torch.rand(shape), torch.zeros(shape[0], dtype=torch.long), time_limit=1)


def test_forward_that_is_not_the_layer_sequence_is_rejected() -> None:
    class Skip(nn.Sequential):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self[1](x) + self[3](self[2](self[1](x)))

    model = Skip(nn.Identity(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    with pytest.raises(InputError, match="forward"):
        minimal_linf(model, torch.rand(2, 4), torch.zeros(2, dtype=torch.long), time_limit=1)


@pytest.mark.parametrize(
    ("images", "labels"),
    [
        (torch.rand(2, 4) + 1.0, torch.zeros(2, dtype=torch.long)),
        (torch.full((2, 4), math.nan), torch.zeros(2, dtype=torch.long)),
        (torch.rand(2, 4), torch.zeros(3, dtype=torch.long)),
        (torch.rand(2, 4), torch.full((2,), 7)),
        (torch.rand(2, 4), torch.zeros(2)),
    ],
)
def test_bad_images_or_labels_are_rejected(images: torch.Tensor, labels: torch.Tensor) -> None:
    with pytest.raises(InputError):
        minimal_linf(_net((4, 5, 3), seed=0), images, labels, time_limit=1)


def test_lower_bound_is_sound_where_highs_cut_off_a_feasible_problem() -> None:
    """Regression: stopping HiGHS at its first solution under an objective cutoff made it call a
    feasible class MILP infeasible, so `lower` = 0.115839 > eps* = 0.1120619 (a point at 0.112063
    is classified 2, not 0)."""
    model = scaled_mlp(4)
    x = torch.rand(16, 12, generator=torch.Generator().manual_seed(4))[:1]
    y = model(x).argmax(1)
    result = minimal_linf(model, x, y)
    assert result.status == ["optimal"]
    assert float(result.lower[0]) <= 0.112063
    assert float(result.upper[0]) == pytest.approx(0.1120619, abs=2e-6)
    _check_witnesses(model, x, y, result)


@pytest.mark.parametrize("seed", [0, 3, 5, 8, 9])
def test_no_attack_point_lies_below_the_lower_bound(seed: int) -> None:
    model = scaled_mlp(seed)
    x = torch.rand(4, 12, generator=torch.Generator().manual_seed(seed))
    y = model(x).argmax(1)
    result = minimal_linf(model, x, y, time_limit=20.0)
    attack = MinPGD(model)(x, y)
    found = attack.linf.double()[attack.success]
    assert bool((found >= result.lower[attack.success] * (1 - 1e-6)).all())
    assert bool((result.lower <= result.upper).all())
    _check_witnesses(model, x, y, result)


def test_a_repaired_witness_within_the_search_tolerance_is_optimal() -> None:
    """Seed 3, width 3 (found by the property test above): the gap is 4.7e-6, the search's own
    RTOL gap plus the witness repair, and the result is optimal, not "unverified"."""
    model = _steep_net((3, 3, 3, 4), seed=3)
    x = torch.rand(4, 3, generator=torch.Generator().manual_seed(3))
    y = _correct(model, x)
    result = minimal_linf(model, x, y, time_limit=30)
    assert result.status == ["optimal"] * 4
    _check_witnesses(model, x, y, result)
