"""Witnesses: a point moved into the eps-ball ∩ box so that its float64 distance is at most eps,
in the images' dtype, and confirmed by the model run in float64."""

import torch

from advlab.attacks.witness import confirmed, distance, float64_model, into_ball


def test_float32_points_rounded_out_of_the_ball_are_moved_back_in():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(200, 3, 5, 5, generator=gen)
    eps = 0.1
    out = (x + eps * torch.sign(torch.randn(x.shape, generator=gen))).clamp(0, 1)  # float32: off by rounding
    assert bool((distance(out, x) > eps).any())  # the case that matters exists
    for norm in ("linf", "l2"):
        point = out if norm == "linf" else x + (out - x) * 1.5
        moved = into_ball(point, x, eps if norm == "linf" else 0.5, (0.0, 1.0), norm)
        assert moved.dtype == torch.float32
        assert bool((distance(moved, x, norm) <= (eps if norm == "linf" else 0.5)).all())
        assert bool(((moved >= 0) & (moved <= 1)).all())
    inside = into_ball(x + 0.01, x, eps, (0.0, 1.5))
    assert torch.equal(inside, x + 0.01)  # a point well inside is kept as it is


def test_float64_points_keep_the_solvers_behaviour():
    x = torch.rand(4, 6, dtype=torch.float64)
    point = x + 0.3
    moved = into_ball(point, x, 0.1, (0.0, 2.0))
    assert moved.dtype == torch.float64 and bool((distance(moved, x) <= 0.1).all())


def test_confirmed_runs_the_float64_copy():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.0], [1e8]]))
        model[1].bias.copy_(torch.tensor([0.0, -6e7]))
    copy = float64_model(model)
    assert copy is not None and next(copy.parameters()).dtype == torch.float64
    assert next(model.parameters()).dtype == torch.float32  # the original is left alone
    point = torch.tensor([[[[0.6000000238418579]]], [[[0.5999999642372131]]]], dtype=torch.float32)
    assert confirmed(copy, point, torch.zeros(2, dtype=torch.long)).tolist() == [True, False]
