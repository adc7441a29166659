"""The closed-form loss maximisers in advlab.exact.linear, checked against search."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advlab.exact import max_linear_l2, max_linear_linf

vectors = st.lists(st.floats(-3, 3, allow_nan=False), min_size=2, max_size=6)


def _random_feasible(x, eps, norm, n, generator):
    direction = torch.randn((n, x.shape[-1]), generator=generator, dtype=torch.float64)
    if norm == "linf":
        step = eps * (torch.rand(direction.shape, generator=generator, dtype=torch.float64) * 2 - 1)
        step = torch.where(torch.rand(step.shape, generator=generator) < 0.3, eps * direction.sign(), step)
        return (x + step).clamp(0, 1)
    radius = eps * torch.rand((n, 1), generator=generator, dtype=torch.float64) ** 0.2
    candidate = (x + radius * direction / direction.norm(dim=1, keepdim=True)).clamp(0, 1)
    return candidate  # clipping only shortens a step, so still feasible


@settings(max_examples=60, deadline=None)
@given(a=vectors, seed=st.integers(0, 1000), eps=st.floats(0.01, 1.5), norm=st.sampled_from(["linf", "l2"]))
def test_no_feasible_point_beats_the_closed_form(a, seed, eps, norm):
    generator = torch.Generator().manual_seed(seed)
    a = torch.tensor(a, dtype=torch.float64)
    x = torch.rand((1, a.numel()), generator=generator, dtype=torch.float64)
    if norm == "linf":
        best = max_linear_linf(x, a, min(eps, 1.0))
        eps = min(eps, 1.0)
        assert float((best - x).abs().max()) <= eps + 1e-12
    else:
        best = max_linear_l2(x, a, eps)
        assert float((best - x).norm()) <= eps + 1e-9
    assert float(best.min()) >= 0 and float(best.max()) <= 1
    others = _random_feasible(x, eps, norm, 4000, generator)
    assert float((others @ a).max()) <= float(best @ a) + 1e-9


def test_l2_without_active_box_is_the_scaled_gradient():
    a = torch.tensor([3.0, -4.0], dtype=torch.float64)
    x = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(max_linear_l2(x, a, 0.1), x + 0.1 * a / 5)


def test_l2_budget_beyond_the_box_corner_stops_at_the_corner():
    a = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64)
    x = torch.tensor([[0.5, 0.5, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(max_linear_l2(x, a, 10.0), torch.tensor([[1.0, 0.0, 0.5]], dtype=torch.float64))
