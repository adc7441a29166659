"""The max-pool relaxation (`MaxPool.relaxation`): its linear upper bound holds on every point
and corner of random boxes for any slopes, its constant is the smallest valid one, CROWN's
choice never exceeds the old constant bound max_i u_i, and the bounds through networks with
max-pools are sound (samples, PGD, the exact MILP) and strictly tighter than with that constant."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from advlab.attacks import PGD
from advlab.exact import margin_bounds, minimal_linf, relu_network
from advlab.exact.bounds import box, hidden_bounds, rival_rows
from advlab.exact.operators import MaxPool, Relu
from advlab.exact.optimized import alpha_margin_bounds, back_substitute, initial_alphas
from advlab.exact.relu_network import _max_pool

POOLS = {"disjoint": (nn.MaxPool2d(2), (2, 4, 4)), "overlapping": (nn.MaxPool2d(3, stride=1), (1, 5, 5)),
         "padded": (nn.MaxPool2d(3, stride=2, padding=1), (1, 5, 5))}


def _random_bounds(gen: torch.Generator, boxes: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random bounds with some single points (ties, dominated windows)."""
    lower = torch.randn(boxes, width, generator=gen, dtype=torch.float64)
    upper = lower + torch.rand(boxes, width, generator=gen, dtype=torch.float64) * 2
    fixed = torch.rand(boxes, width, generator=gen) < 0.2
    return lower, torch.where(fixed, lower, upper)


def _linear_bounds(pool: MaxPool, lower: torch.Tensor, upper: torch.Tensor, alpha: torch.Tensor | None,
                   z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The relaxation's lower and upper functions of each window, per slope set, at points z
    (B, P, W) -> (B, R, P, out), read off `back` on one-hot rows (the code the bounds use)."""
    relax = pool.relaxation(lower, upper, alpha)
    out = pool.groups.shape[0]
    rows = 1 if alpha is None else alpha.shape[1]
    uppers, lowers = [], []
    for o in range(out):
        lam = torch.zeros(lower.shape[0], rows, out, dtype=torch.float64)
        lam[..., o] = 1.0
        coef, const = relax.back(lam)
        uppers.append(torch.einsum("brw,bpw->brp", coef, z) + const.unsqueeze(-1))
        coef, const = relax.back(-lam)
        lowers.append(-(torch.einsum("brw,bpw->brp", coef, z) + const.unsqueeze(-1)))
    return torch.stack(lowers, -1), torch.stack(uppers, -1)


@pytest.mark.parametrize("kind", sorted(POOLS))
@pytest.mark.parametrize("slopes", ["crown", "random", "wild"])
def test_the_relaxation_holds_on_sampled_points_and_on_every_corner(kind: str, slopes: str) -> None:
    layer, shape = POOLS[kind]
    pool = _max_pool(layer, shape)
    width, out, k = math.prod(shape), *pool.groups.shape
    gen = torch.Generator().manual_seed(len(kind))
    lower, upper = _random_bounds(gen, 3, width)
    alpha = None
    if slopes != "crown":  # "wild": far outside [0, 1], clipped by the relaxation
        alpha = torch.rand(3, 2, 2 * out * k, generator=gen, dtype=torch.float64)
        alpha = alpha * 4 - 1.5 if slopes == "wild" else alpha
    points = lower.unsqueeze(1) + (upper - lower).unsqueeze(1) * torch.rand(3, 300, width, generator=gen, dtype=torch.float64)
    corners = torch.where(torch.rand(3, 300, width, generator=gen) < 0.5, lower.unsqueeze(1), upper.unsqueeze(1))
    z = torch.cat([points, corners], 1)
    below, above = _linear_bounds(pool, lower, upper, alpha, z)
    h = pool(z).unsqueeze(1)  # (B, 1, P, out)
    assert bool((below <= h + 1e-12).all() and (h <= above + 1e-12).all())


def test_the_constant_is_the_smallest_valid_one_by_brute_force_over_the_corners() -> None:
    """On one window, for random slopes: the upper function minus the max is >= 0 on every one of
    the 2^k corners (the max of a convex function over a box is at a corner) and 0 on one."""
    pool = MaxPool(torch.tensor([[0, 1, 2, 3]]))
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        lower, upper = _random_bounds(gen, 1, 4)
        alpha = torch.rand(1, 1, 8, generator=gen, dtype=torch.float64)
        corners = torch.tensor(list(itertools.product([0, 1], repeat=4)), dtype=torch.float64)
        z = (lower + (upper - lower) * corners).unsqueeze(0)  # (1, 16, 4)
        _, above = _linear_bounds(pool, lower, upper, alpha, z)
        gap = above[0, 0, :, 0] - pool(z)[0, :, 0]
        assert float(gap.min()) >= -1e-12 and float(gap.min()) <= 1e-12


def test_crown_choice_is_below_the_old_constant_and_exact_on_a_dominated_window() -> None:
    """max(z1, z2) with z1 in [0, 2], z2 in [0, 1]: CROWN's line is 1 + z1 / 2 (g = max(l_m, U2) = 1,
    slope (2 - 1) / 2), below the old constant 2 except at z1 = 2; bounding max(z1, z2) - z1 it
    gives the exact 1 where the constant gave 2. A window with l_1 >= u_2 is z1 itself."""
    pool = MaxPool(torch.tensor([[0, 1]]))
    lower = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    upper = torch.tensor([[2.0, 1.0]], dtype=torch.float64)
    coef, const = pool.relaxation(lower, upper).back(torch.ones(1, 1, 1, dtype=torch.float64))
    assert coef.tolist() == [[[0.5, 0.0]]] and const.tolist() == [[1.0]]
    on_z = coef - torch.tensor([1.0, 0.0], dtype=torch.float64)  # the bound of max(z) - z1 over the box
    assert float(const + (on_z.clamp_min(0) * upper + on_z.clamp_max(0) * lower).sum()) == 1.0
    constant = torch.tensor([[[0.0, 0.0, 1.0, 0.0]]], dtype=torch.float64)  # slopes 0, lower weight on z1
    old, old_const = pool.relaxation(lower, upper, constant).back(torch.ones(1, 1, 1, dtype=torch.float64))
    assert old.tolist() == [[[0.0, 0.0]]] and old_const.tolist() == [[2.0]]  # slopes 0: the constant max_i u_i
    tiny = torch.tensor([[[0.0, 0.0, 1e-300, 1e-310]]], dtype=torch.float64)  # lower weights that still sum to 1
    coef, const = pool.relaxation(lower - 5, upper - 5, tiny).back(-torch.ones(1, 1, 1, dtype=torch.float64))
    assert abs(float(coef.sum()) + 1.0) < 1e-12 and bool((coef < 0).all())
    dominated = pool.relaxation(torch.tensor([[1.0, 0.0]], dtype=torch.float64),
                                torch.tensor([[3.0, 1.0]], dtype=torch.float64))
    for lam in (1.0, -1.0):
        coef, const = dominated.back(torch.full((1, 1, 1), lam, dtype=torch.float64))
        assert coef.tolist() == [[[lam, 0.0]]] and const.tolist() == [[0.0]]


def _pool_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(27, 6), nn.ReLU(),
                          nn.Linear(6, 3)).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    return model


def _inputs(seed: int, n: int) -> torch.Tensor:
    return torch.rand(n, 64, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _constant_pool_margins(net, xl, xu, labels) -> torch.Tensor:
    """Margin lower bounds with the old relaxation: every pool slope 0 (the constant max_i u_i)."""
    hidden = hidden_bounds(net, xl, xu)
    others, rows = rival_rows(labels, net.num_classes)
    depth = len(net.nonlinear)
    alphas = initial_alphas(net, hidden, depth, rows.shape[1])
    half = [a.shape[-1] // 2 for a in alphas]  # a pool's upper slopes, then its lower weights (one-hot at m)
    alphas = [a if isinstance(g, Relu) else torch.cat([torch.zeros_like(a[..., :h]), a[..., h:]], -1)
              for a, g, h in zip(alphas, net.nonlinear, half)]
    none = [None] * depth
    return -back_substitute(net, hidden, depth, -rows, xl, xu, alphas, none, none).upper


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_margins_are_sound_and_tighter_than_with_the_constant_upper_bound(seed: int) -> None:
    model = _pool_cnn(seed)
    net = relu_network(model, (1, 8, 8))
    x = _inputs(seed, 8)
    labels = net.logits(x).argmax(1)
    xl, xu = box(x, 0.15, (0.0, 1.0))
    crown = margin_bounds(net, xl, xu, labels)
    alpha = alpha_margin_bounds(net, xl, xu, labels, steps=20, hidden_steps=5).lower
    others, _ = rival_rows(labels, 3)
    crown_rivals, alpha_rivals = crown.gather(1, others), alpha.gather(1, others)
    old = _constant_pool_margins(net, xl, xu, labels)
    assert bool((crown_rivals >= old - 1e-7).all()) and bool((crown_rivals > old + 1e-3).any())
    assert bool((alpha_rivals >= crown_rivals - 1e-7).all())
    gen = torch.Generator().manual_seed(9)
    points = xl.unsqueeze(1) + (xu - xl).unsqueeze(1) * torch.rand(8, 500, 64, generator=gen, dtype=torch.float64)
    adv = PGD(model, eps=0.15, steps=40, loss="margin", seed=seed)(x.reshape(-1, 1, 8, 8), labels).x_adv
    points = torch.cat([points, adv.reshape(8, 1, 64)], 1)
    logits = net.logits(points.reshape(-1, 64)).reshape(8, 501, 3)
    margins = logits.gather(2, labels.view(8, 1, 1).expand(8, 501, 1)) - logits
    margins = margins.gather(2, others.unsqueeze(1).expand(-1, 501, -1))
    assert bool((margins >= alpha_rivals.unsqueeze(1)).all())


def test_every_image_alpha_certifies_has_an_exact_minimal_distance_above_eps() -> None:
    """Against the MILP (max-pool windows with binaries): alpha-CROWN with optimised pool slopes
    never certifies a radius the exact minimal adversarial distance does not exceed, and it
    certifies at least what the constant upper bound certified."""
    model = _pool_cnn(4)
    net = relu_network(model, (1, 8, 8))
    x = _inputs(4, 12)
    labels = net.logits(x).argmax(1)
    exact = minimal_linf(model, x.reshape(-1, 1, 8, 8), labels, time_limit=30)
    assert all(s in ("optimal", "unreachable") for s in exact.status)
    eps = float(exact.lower.median()) * 0.8
    xl, xu = box(x, eps, (0.0, 1.0))
    certified = alpha_margin_bounds(net, xl, xu, labels, steps=30, hidden_steps=10).lower.amin(1) > 0
    assert bool(certified.any())
    assert bool((exact.lower[certified] >= eps - 1e-9).all())
    assert bool((certified >= (_constant_pool_margins(net, xl, xu, labels).amin(1) > 0)).all())
