"""FAB-T: the hyperplane projections against their closed forms, exact grading on softmax
regression, ball and box, batch invariance, bad input."""

import pytest
import torch
from torch import nn

from advlab.attacks import FAB, FABT, make_attack
from advlab.attacks.fab import projection_l2, projection_linf
from advlab.errors import InputError
from advlab.exact import minimal_perturbation
from tests.invariance import assert_same_per_example


def test_projections_match_the_closed_forms_away_from_the_box():
    """With the box inactive: d = (b - <w,t>) w / ||w||_2^2 (L2), (b - <w,t>) sign(w) / ||w||_1 (L-inf)."""
    g = torch.Generator().manual_seed(0)
    t = 0.4 + 0.2 * torch.rand(20, 30, generator=g, dtype=torch.float64)
    w = torch.randn(20, 30, generator=g, dtype=torch.float64)
    b = (w * t).sum(1) + 0.01 * torch.randn(20, generator=g, dtype=torch.float64)
    gap = (b - (w * t).sum(1)).unsqueeze(1)
    assert torch.allclose(projection_l2(t, w, b), gap * w / (w**2).sum(1, keepdim=True), atol=1e-10)
    assert torch.allclose(projection_linf(t, w, b), gap * w.sign() / w.abs().sum(1, keepdim=True), atol=1e-10)
    for project in (projection_l2, projection_linf):
        d = project(t, w, b)
        assert torch.allclose((w * (t + d)).sum(1), b, atol=1e-9)  # on the hyperplane


def test_linf_projection_is_the_linear_programs_optimum():
    """min ||d||_inf s.t. <w, t + d> = b, t + d in [0, 1]^n, solved by HiGHS: the same optimal
    radius and a feasible d; where the box makes the plane unreachable, every coordinate moves
    fully towards it."""
    scipy_optimize = pytest.importorskip("scipy.optimize")
    g = torch.Generator().manual_seed(5)
    n, m = 40, 12
    t = torch.rand(n, m, generator=g, dtype=torch.float64)
    t[t < 0.25], t[t > 0.9] = 0.0, 1.0  # coordinates on the box faces, as in images
    w = torch.randn(n, m, generator=g, dtype=torch.float64)
    w[torch.rand(n, m, generator=g) < 0.15] = 0.0
    b = (w * t).sum(1) + torch.randn(n, generator=g, dtype=torch.float64) * torch.linspace(0.05, 4, n, dtype=torch.float64)
    d = projection_linf(t, w, b)
    solved = 0
    for i in range(n):
        # variables (d_1..d_m, s): minimise s, -s <= d_j <= s, <w, d> = b - <w, t>, -t <= d <= 1 - t
        cost = [0.0] * m + [1.0]
        upper = [[(1.0 if j == k else 0.0) for k in range(m)] + [-1.0] for j in range(m)]
        lower = [[(-1.0 if j == k else 0.0) for k in range(m)] + [-1.0] for j in range(m)]
        lp = scipy_optimize.linprog(
            cost, A_ub=upper + lower, b_ub=[0.0] * (2 * m), A_eq=[w[i].tolist() + [0.0]], b_eq=[float(b[i] - w[i] @ t[i])],
            bounds=[(-float(t[i, j]), 1 - float(t[i, j])) for j in range(m)] + [(0, None)], method="highs",
        )
        if lp.status == 0:
            solved += 1
            assert float(d[i].abs().max()) == pytest.approx(lp.fun, abs=1e-9)
            assert float(w[i] @ (t[i] + d[i])) == pytest.approx(float(b[i]), abs=1e-9)
        else:  # infeasible: the full move towards the plane
            towards = torch.sign(w[i]) * torch.sign(b[i] - w[i] @ t[i])
            full = torch.where(towards > 0, 1 - t[i], torch.where(towards < 0, -t[i], torch.zeros_like(t[i])))
            assert torch.allclose(d[i], full, atol=1e-12)
    assert 10 <= solved < n  # both cases occur
    assert bool(((t + d >= -1e-12) & (t + d <= 1 + 1e-12)).all())


@pytest.mark.parametrize("norm,eps", [("linf", 0.05), ("l2", 0.6)])
@pytest.mark.parametrize("cls,kwargs", [(FABT, {"targets": 3}), (FAB, {})])
def test_against_the_exact_minimal_perturbation_of_softmax_regression(softmax_model, embedded, norm, eps, cls, kwargs):
    """FAB-T, and untargeted FAB (nearest linearised boundary at each step: exact on a linear
    model), are sound and break nearly every point within 0.8 eps."""
    model = softmax_model.double()
    try:
        x, y = embedded.test.images[:100].double(), embedded.test.labels[:100]
        exact = minimal_perturbation(model, x, y, norm=norm).distance
        result = cls(model, eps=eps, norm=norm, steps=30, **kwargs)(x, y)
    finally:
        model.float()
    size = result.linf if norm == "linf" else result.l2
    assert bool((size <= eps + 1e-9).all())
    assert bool(((result.x_adv >= 0) & (result.x_adv <= 1)).all())
    assert bool((exact[result.success] <= eps + 1e-9).all())
    reachable = exact <= 0.8 * eps
    assert reachable.sum() >= 10
    assert result.success[reachable].double().mean() >= 0.97


@pytest.mark.invariance
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("cls,kwargs", [(FABT, {"targets": 2}), (FAB, {})])
def test_batch_invariance_box_and_restarts(norm, cls, kwargs):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.ReLU(), nn.Linear(16, 5)).double().eval()
    box = (-1.0, 2.0)
    x = box[0] + 3 * torch.rand(25, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(1)
    eps = 0.3 if norm == "linf" else 1.5
    whole = cls(model, eps=eps, norm=norm, steps=10, restarts=2, bounds=box, **kwargs)(x, y)
    pieces = cls(model, eps=eps, norm=norm, steps=10, restarts=2, bounds=box, batch_size=6, **kwargs)(x, y)
    # the same per example up to the model's own float64 rounding for another batch size
    assert_same_per_example(whole, pieces)
    size = whole.linf if norm == "linf" else whole.l2
    assert bool((size <= eps + 1e-9).all())
    assert bool(((whole.x_adv >= box[0]) & (whole.x_adv <= box[1])).all())


def test_eps_zero_and_bad_input(softmax_model, embedded):
    x, y = embedded.test.images[:10], embedded.test.labels[:10]
    assert torch.equal(make_attack("fab-t", softmax_model, eps=0.0)(x, y).x_adv, x)
    for kwargs in ({"eps": -0.1}, {"eps": 0.1, "norm": "l1"}, {"eps": 0.1, "steps": 0}, {"eps": 0.1, "targets": 2.5},
                   {"eps": 0.1, "beta": 0.0}):
        with pytest.raises(InputError):
            FABT(softmax_model, **kwargs)
    reached = FABT(softmax_model, eps=0.3, steps=20)(x, y, targets="random")  # a caller's target: reach it
    assert torch.equal(reached.adv_pred[reached.success], reached.targets[reached.success])
