"""alpha-CROWN and beta-CROWN bounds are valid for every slope in [0, 1] and multiplier >= 0,
never looser than CROWN, and hold for every sampled point of the box (and of a split domain)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advlab.exact import hidden_bounds, margin_bounds, relu_network
from advlab.exact.bounds import box, margin_rows
from advlab.exact.optimized import alpha_margin_bounds, back_substitute, clamp_splits, optimise, optimised_hidden
from tests.exact.nets import conv_net, random_mlp
from tests.exact.test_bounds import _points

widths = st.lists(st.integers(2, 10), min_size=1, max_size=3)


def _net(seed: int, hidden_widths: list[int], classes: int = 4):
    return relu_network(random_mlp(seed, (6, *hidden_widths, classes)), (6,))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), hidden_widths=widths, eps=st.floats(0.01, 0.5))
def test_alpha_bounds_hold_on_sampled_points_and_are_never_looser_than_crown(seed, hidden_widths, eps) -> None:
    net = _net(seed, hidden_widths)
    x = torch.rand(3, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    labels = torch.tensor([0, 1, 3])
    xl, xu = box(x, eps, (0.0, 1.0))
    alpha = alpha_margin_bounds(net, xl, xu, labels, steps=10, hidden_steps=10)
    crown = margin_bounds(net, xl, xu, labels)
    assert bool((alpha.lower >= crown - 1e-9).all())
    points = _points(xl, xu, 3000, seed)
    zs = net.pre_activations(points.reshape(-1, 6))
    for (lo, up), (clo, cup), z in zip(alpha.hidden, hidden_bounds(net, xl, xu), zs[:-1]):
        assert bool((lo >= clo - 1e-12).all() and (up <= cup + 1e-12).all())
        z = z.reshape(3, 3000, -1)
        assert bool((z >= lo.unsqueeze(1)).all() and (z <= up.unsqueeze(1)).all())
    logits = zs[-1].reshape(3, 3000, 4)
    margins = logits.gather(2, labels.view(3, 1, 1).expand(3, 3000, 1)) - logits
    lower = alpha.lower.masked_fill(alpha.lower.isinf(), -torch.inf)  # +inf at k = y
    assert bool((margins >= lower.unsqueeze(1)).all())


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), hidden_widths=widths, eps=st.floats(0.05, 0.5))
def test_any_slopes_and_multipliers_bound_every_point_of_a_split_domain(seed, hidden_widths, eps) -> None:
    """back_substitute with random alpha in [0, 1], beta >= 0 and random splits is an upper bound
    of lam . z_L on every sampled point that satisfies the splits."""
    net = _net(seed, hidden_widths)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 6, generator=gen, dtype=torch.float64)
    xl, xu = box(x, eps, (0.0, 1.0))
    hidden = hidden_bounds(net, xl, xu)
    signs = [torch.randint(-1, 2, lo.shape, generator=gen).double() * (torch.rand(lo.shape, generator=gen) < 0.3)
             for lo, _ in hidden]
    clamped = clamp_splits(hidden, signs)
    lam = torch.randn(2, 5, 4, generator=gen, dtype=torch.float64)
    alphas = [torch.rand(2, 5, lo.shape[1], generator=gen, dtype=torch.float64) for lo, _ in hidden]
    betas = [3 * torch.rand(2, 5, lo.shape[1], generator=gen, dtype=torch.float64) for lo, _ in hidden]
    upper = back_substitute(net, clamped, len(hidden), lam, xl, xu, alphas, betas, signs).upper
    optimised = optimise(net, clamped, len(hidden), lam, xl, xu, steps=5, signs=signs).upper
    points = _points(xl, xu, 4000, seed)
    zs = net.pre_activations(points.reshape(-1, 6))
    feasible = torch.ones(2, 4000, dtype=torch.bool)
    for s, z in zip(signs, zs[:-1]):
        feasible &= ((s.unsqueeze(1) * z.reshape(2, 4000, -1)) >= 0).all(-1)
    values = (zs[-1].reshape(2, 4000, 1, 4) * lam.unsqueeze(1)).sum(-1)  # (2, 4000, 5)
    for bound in (upper, optimised):
        ok = (values <= bound.unsqueeze(1) + 1e-9) | ~feasible.unsqueeze(-1)
        assert bool(ok.all())


def test_clamp_splits() -> None:
    lo, up = torch.tensor([[-1.0, -2.0, 0.5]]), torch.tensor([[1.0, 2.0, 3.0]])
    (clo, cup), = clamp_splits([(lo, up)], [torch.tensor([[1.0, -1.0, 0.0]])])
    assert clo.tolist() == [[0.0, -2.0, 0.5]] and cup.tolist() == [[1.0, 0.0, 3.0]]


def test_optimised_hidden_on_conv_net_is_sound_and_tighter() -> None:
    net = relu_network(conv_net(3), (1, 8, 8))
    x = torch.rand(2, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    xl, xu = box(x, 0.05, (0.0, 1.0))
    crown = hidden_bounds(net, xl, xu)
    tight = optimised_hidden(net, crown, xl, xu, steps=10)
    zs = net.pre_activations(_points(xl, xu, 2000, 3).reshape(-1, 64))
    for (lo, up), (clo, cup), z in zip(tight, crown, zs[:-1]):
        assert bool((lo >= clo).all() and (up <= cup).all())
        z = z.reshape(2, 2000, -1)
        assert bool((z >= lo.unsqueeze(1)).all() and (z <= up.unsqueeze(1)).all())
    labels = net.logits(x).argmax(1)
    alpha = alpha_margin_bounds(net, xl, xu, labels, steps=10)
    assert bool((alpha.lower >= margin_bounds(net, xl, xu, labels) - 1e-9).all())
    assert margin_rows(labels, 4).shape == (2, 4, 4)
