"""Bounds through convolutional networks, operator by operator: sound on random CNNs (stride,
padding, BatchNorm, average pooling), CROWN equal to the dense-matrix computation, ordered
(hidden: CROWN within interval; margins: alpha-CROWN >= CROWN), never contradicted by an attack or by the exact MILP."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from advlab.attacks import PGD
from advlab.exact import hidden_bounds, margin_bounds, minimal_linf, relu_network, spec_bounds
from advlab.exact.bounds import box, margin_rows
from advlab.exact.linear_operators import Conv, Dense, Diagonal
from advlab.exact.optimized import alpha_margin_bounds
from tests.exact.test_bounds import _points

VARIANTS = ["plain", "strided", "batchnorm", "avgpool"]


def small_cnn(seed: int, variant: str, *, side: int = 8, scale: float = 2.0) -> nn.Module:
    """conv-relu-conv-relu-flatten-linear on 1 x side x side inputs, 3 classes; `variant` adds
    a stride and padding, BatchNorm after each convolution (random running statistics), or an
    average pool between the convolutions."""
    torch.manual_seed(seed)
    stride, pad = (2, 1) if variant == "strided" else (1, 0)
    layers: list[nn.Module] = [nn.Conv2d(1, 3, 3, stride=stride, padding=pad)]
    layers += [nn.BatchNorm2d(3)] if variant == "batchnorm" else []
    layers += [nn.ReLU()] + ([nn.AvgPool2d(2)] if variant == "avgpool" else [])
    layers += [nn.Conv2d(3, 4, 2, padding=1)] + ([nn.BatchNorm2d(4)] if variant == "batchnorm" else []) + [nn.ReLU()]
    features = nn.Sequential(*layers)
    width = features(torch.zeros(1, 1, side, side)).numel()
    model = nn.Sequential(features, nn.Flatten(), nn.Linear(width, 3)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


def _inputs(seed: int, n: int = 3, side: int = 8) -> torch.Tensor:
    return torch.rand(n, side * side, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_convolutions_stay_operators_and_batchnorm_is_folded() -> None:
    net = relu_network(small_cnn(0, "batchnorm"), (1, 8, 8))
    assert [type(op) for op in net.affines[0].ops] == [Conv]  # BatchNorm folded into its convolution
    assert [type(op) for op in net.affines[1].ops] == [Conv]
    assert [type(op) for op in net.affines[2].ops] == [Dense]
    avg = relu_network(small_cnn(0, "avgpool"), (1, 8, 8))
    assert [type(op) for op in avg.affines[1].ops] == [Conv, Conv]  # the pool is a depthwise convolution
    x = _inputs(0).reshape(3, 1, 8, 8)
    with torch.no_grad():
        expected = small_cnn(0, "batchnorm").double()(x)
    assert torch.allclose(net.logits(x.flatten(1)), expected, rtol=0, atol=1e-12)


def test_normalize_before_a_padded_convolution_stays_its_own_operator() -> None:
    from advlab.models import Normalize

    model = nn.Sequential(Normalize([0.5], [0.25]), nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(2 * 36, 2)).eval()
    net = relu_network(model, (1, 6, 6))
    assert [type(op) for op in net.affines[0].ops] == [Diagonal, Conv]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("method", ["interval", "crown"])
def test_bounds_contain_every_sampled_and_attacked_value(variant: str, method: str) -> None:
    model = small_cnn(1, variant)
    net = relu_network(model, (1, 8, 8))
    x = _inputs(1)
    labels = net.logits(x).argmax(1)
    xl, xu = box(x, 0.05, (0.0, 1.0))
    hidden = hidden_bounds(net, xl, xu, method=method)
    lower, upper = spec_bounds(net, hidden, margin_rows(labels, 3), xl, xu, method=method)
    points = _points(xl, xu, 2000, 1)
    attacked = PGD(model.double(), eps=0.05, steps=20, loss="margin", seed=0)(x.reshape(3, 1, 8, 8), labels).x_adv
    points = torch.cat([points, attacked.reshape(3, 1, 64).double()], 1)
    count = points.shape[1]
    zs = net.pre_activations(points.reshape(-1, 64))
    for (lo, up), z in zip(hidden, zs[:-1]):
        z = z.reshape(3, count, -1)
        assert bool((z >= lo.unsqueeze(1)).all() and (z <= up.unsqueeze(1)).all())
    logits = zs[-1].reshape(3, count, 3)
    margins = logits.gather(2, labels.view(3, 1, 1).expand(3, count, 1)) - logits
    assert bool((margins >= lower.unsqueeze(1)).all() and (margins <= upper.unsqueeze(1)).all())


def _dense_crown(net, hidden, rows, xl, xu) -> torch.Tensor:
    """Upper bounds of rows . z_L by back-substitution through the dense matrices (the reference)."""
    lam = rows
    const = lam @ net.affines[-1].bias
    lam = lam @ net.affines[-1].dense()
    for i in range(len(net.nonlinear) - 1, -1, -1):
        lo, up = hidden[i]
        unstable = (lo < 0) & (up > 0)
        active = (lo >= 0).double()
        su = torch.where(unstable, up / torch.where(unstable, up - lo, 1.0), active).unsqueeze(1)
        tu = torch.where(unstable, -lo * up / torch.where(unstable, up - lo, 1.0), 0.0).unsqueeze(1)
        sl = torch.where(unstable, (up >= -lo).double(), active).unsqueeze(1)
        pos, neg = lam.clamp_min(0), lam.clamp_max(0)
        const = const + (pos * tu).sum(-1)
        lam = pos * su + neg * sl
        const = const + lam @ net.affines[i].bias
        lam = lam @ net.affines[i].dense()
    return const + (lam.clamp_min(0) * xu.unsqueeze(1)).sum(-1) + (lam.clamp_max(0) * xl.unsqueeze(1)).sum(-1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_crown_through_convolutions_equals_the_dense_jacobian_computation(variant: str) -> None:
    net = relu_network(small_cnn(2, variant, side=6), (1, 6, 6))
    x = _inputs(2, side=6)
    labels = net.logits(x).argmax(1)
    xl, xu = box(x, 0.05, (0.0, 1.0))
    hidden = hidden_bounds(net, xl, xu)
    rows = margin_rows(labels, 3)
    lower, upper = spec_bounds(net, hidden, rows, xl, xu)
    assert torch.allclose(upper, _dense_crown(net, hidden, rows, xl, xu), rtol=0, atol=1e-6)
    assert torch.allclose(lower, -_dense_crown(net, hidden, -rows, xl, xu), rtol=0, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_interval_crown_alpha_are_ordered_and_certified_points_survive_pgd(variant: str) -> None:
    model = small_cnn(3, variant, scale=1.0)
    net = relu_network(model, (1, 8, 8))
    x = _inputs(3, n=6)
    labels = net.logits(x).argmax(1)
    for eps in (0.01, 0.05):
        xl, xu = box(x, eps, (0.0, 1.0))
        # hidden bounds: CROWN within interval (by construction); the margins' CROWN bound is not
        # always above the interval one (a known property of CROWN), so certify tries both
        for (lo, up), (ilo, iup) in zip(hidden_bounds(net, xl, xu), hidden_bounds(net, xl, xu, method="interval")):
            assert bool((lo >= ilo).all() and (up <= iup).all())
        crown = margin_bounds(net, xl, xu, labels)
        alpha = alpha_margin_bounds(net, xl, xu, labels, steps=10, hidden_steps=10).lower
        assert bool((alpha >= crown - 1e-9).all())
        certified = (alpha > 0).all(1)
        pgd = PGD(model.double(), eps=eps, steps=40, loss="margin", seed=0)
        adv = pgd(x.reshape(-1, 1, 8, 8), labels).x_adv
        with torch.no_grad():
            broken = model.double()(adv).argmax(1) != labels
        assert not bool((certified & broken).any())


def test_certified_images_have_an_exact_minimal_distance_above_eps() -> None:
    model = small_cnn(4, "strided", side=5, scale=1.5)
    net = relu_network(model, (1, 5, 5))
    x = _inputs(4, n=4, side=5)
    labels = net.logits(x).argmax(1)
    eps = 0.03
    xl, xu = box(x, eps, (0.0, 1.0))
    certified = (margin_bounds(net, xl, xu, labels) > 0).all(1)
    exact = minimal_linf(model, x.reshape(-1, 1, 5, 5), labels, time_limit=30)
    assert all(s in ("optimal", "unreachable") for s in exact.status)
    assert bool(certified.any())
    assert bool((exact.lower[certified] >= eps - 1e-9).all())
    assert bool((certified == (exact.lower > eps)).any())


def _as_dense_mlp(model: nn.Module, side: int) -> nn.Sequential:
    """The same function with every convolution replaced by an nn.Linear holding its matrix:
    the MLP path of the bound code."""
    layers: list[nn.Module] = [nn.Flatten()]
    shape: tuple[int, ...] = (1, side, side)
    for layer in [m for m in model.modules() if not list(m.children())]:
        if isinstance(layer, nn.Conv2d):
            n = math.prod(shape)
            basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
            with torch.no_grad():
                columns = nn.functional.conv2d(basis, layer.weight.double(), None, layer.stride, layer.padding)
                bias = layer(torch.zeros(1, *shape, dtype=torch.float64)).flatten()
            dense = nn.Linear(n, columns[0].numel()).double()
            with torch.no_grad():
                dense.weight.copy_(columns.reshape(n, -1).T)
                dense.bias.copy_(bias)
            layers.append(dense)
            shape = tuple(columns.shape[1:])
        elif isinstance(layer, (nn.ReLU, nn.Linear)):
            layers.append(layer.double())
    return nn.Sequential(*layers).eval()


@pytest.mark.parametrize("variant", ["plain", "strided"])
def test_cnn_bounds_agree_with_the_mlp_path_on_the_cnn_flattened_to_dense(variant: str) -> None:
    model = small_cnn(4, variant, side=6).double()
    dense = _as_dense_mlp(model, 6)
    x = _inputs(4, side=6)
    assert torch.allclose(dense(x), model(x.reshape(-1, 1, 6, 6)), rtol=0, atol=1e-12)
    cnn, mlp = relu_network(model, (1, 6, 6)), relu_network(dense, (36,))
    assert all(isinstance(op, Dense) for a in mlp.affines for op in a.ops)
    labels = cnn.logits(x).argmax(1)
    for eps in (0.02, 0.1):
        xl, xu = box(x, eps, (0.0, 1.0))
        for method in ("interval", "crown"):
            mine, reference = margin_bounds(cnn, xl, xu, labels, method=method), margin_bounds(mlp, xl, xu, labels, method=method)
            assert torch.allclose(mine, reference, rtol=1e-9, atol=1e-9)
        alpha = alpha_margin_bounds(cnn, xl, xu, labels, steps=5, hidden_steps=5).lower
        assert torch.allclose(alpha, alpha_margin_bounds(mlp, xl, xu, labels, steps=5, hidden_steps=5).lower, rtol=1e-7, atol=1e-7)


def test_relu_then_max_pool_keeps_the_model_order_and_passes_bounds_through_unchanged() -> None:
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(18, 3)).double().eval()
    net = relu_network(model, (1, 8, 8))
    assert [type(g).__name__ for g in net.nonlinear] == ["Relu", "MaxPool"]
    assert net.affines[1].ops == ()  # the identity between them
    x = _inputs(5)
    xl, xu = box(x, 0.1, (0.0, 1.0))
    (l0, u0), (l1, u1) = hidden_bounds(net, xl, xu)
    # no arithmetic through the identity: the pool sees relu's bounds exactly (zeros stay zeros,
    # so max-pool ties break on the first input, as auto_LiRPA breaks them)
    assert torch.equal(l1, l0.clamp_min(0)) and torch.equal(u1, u0.clamp_min(0))
    lower, upper = spec_bounds(net, [(l0, u0), (l1, u1)], torch.eye(3, dtype=torch.float64).expand(3, -1, -1), xl, xu)
    points = xl.unsqueeze(1) + (xu - xl).unsqueeze(1) * torch.rand(3, 200, 64, dtype=torch.float64)
    logits = net.logits(points.reshape(-1, 64)).reshape(3, 200, 3)
    assert bool((logits >= lower.unsqueeze(1)).all() and (logits <= upper.unsqueeze(1)).all())


def test_a_box_bounds_do_not_depend_on_the_other_boxes_of_its_batch_and_lower_only_equals_both_sides() -> None:
    from tests.exact.nets import conv_net

    net = relu_network(conv_net(6), (1, 8, 8))
    x = _inputs(6, n=5)
    labels = net.logits(x).argmax(1)
    xl, xu = box(x, 0.05, (0.0, 1.0))
    together = margin_bounds(net, xl, xu, labels)
    alone = torch.cat([margin_bounds(net, xl[i : i + 1], xu[i : i + 1], labels[i : i + 1]) for i in range(5)])
    assert torch.allclose(together, alone, rtol=0, atol=1e-12)
    hidden = hidden_bounds(net, xl, xu)
    both = spec_bounds(net, hidden, margin_rows(labels, 4), xl, xu)[0].scatter(1, labels.unsqueeze(1), torch.inf)
    assert torch.allclose(together, both, rtol=0, atol=1e-8)  # the widening against rounding differs by ~1e-9


@pytest.mark.parametrize("per_row_slopes", [False, True])
def test_a_disjoint_max_pool_stepped_through_with_its_relu_equals_the_two_steps(per_row_slopes: bool) -> None:
    from advlab.exact.operators import MaxPool, Relu
    from advlab.exact.relu_network import _max_pool

    gen = torch.Generator().manual_seed(7)
    pool = _max_pool(nn.MaxPool2d(2), (3, 6, 6))
    assert pool.disjoint and not _max_pool(nn.MaxPool2d(3, stride=1), (3, 6, 6)).disjoint
    lower = torch.randn(4, 108, generator=gen, dtype=torch.float64)
    upper = lower + torch.rand(4, 108, generator=gen, dtype=torch.float64)
    lower[:, :20] = upper[:, :20]  # single points: ties and dominated windows
    alpha = torch.rand(4, 5, 108, generator=gen, dtype=torch.float64) if per_row_slopes else None
    relu = Relu().relaxation(lower, upper, alpha)
    relax = MaxPool(pool.groups).relaxation(*Relu().interval(lower, upper))
    assert relax.disjoint
    lam = torch.randn(4, 5, 27, generator=gen, dtype=torch.float64)
    on_h, const = relax.back(lam)
    expected, extra = relu.back(on_h)
    fused, fused_const = relax.back_through(relu, lam)
    assert torch.allclose(fused, expected, rtol=0, atol=1e-12)
    assert torch.allclose(fused_const, const + extra, rtol=0, atol=1e-12)


def test_relu_then_overlapping_max_pool_bounds_hold() -> None:
    torch.manual_seed(8)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(3, stride=1), nn.Conv2d(3, 2, 2), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 3)).double().eval()
    for p in model.parameters():
        p.data.mul_(2.0)
    net = relu_network(model, (1, 8, 8))
    x = _inputs(8)
    labels = net.logits(x).argmax(1)
    xl, xu = box(x, 0.1, (0.0, 1.0))
    hidden = hidden_bounds(net, xl, xu)
    lower, upper = spec_bounds(net, hidden, margin_rows(labels, 3), xl, xu)
    points = _points(xl, xu, 2000, 8)
    zs = net.pre_activations(points.reshape(-1, 64))
    for (lo, up), z in zip(hidden, zs[:-1]):
        z = z.reshape(3, 2000, -1)
        assert bool((z >= lo.unsqueeze(1)).all() and (z <= up.unsqueeze(1)).all())
    logits = zs[-1].reshape(3, 2000, 3)
    margins = logits.gather(2, labels.view(3, 1, 1).expand(3, 2000, 1)) - logits
    assert bool((margins >= lower.unsqueeze(1)).all() and (margins <= upper.unsqueeze(1)).all())


def test_a_max_pool_needs_every_input_that_can_set_an_open_window() -> None:
    from advlab.exact.relu_network import _max_pool

    pool = _max_pool(nn.MaxPool2d(2), (1, 2, 4))  # two windows: inputs (0, 1, 4, 5) and (2, 3, 6, 7)
    lower = torch.tensor([[0.5, 0.2, 0.0, 0.0, 0.9, 0.1, 0.0, 0.0]], dtype=torch.float64)
    upper = torch.tensor([[1.0, 0.9, 0.3, 0.2, 0.95, 0.4, 0.1, 0.0]], dtype=torch.float64)
    # window 1 is open (l_m = 0.9 at input 4, u_0 = 1.0 > 0.9): inputs 0 and 4 can set it, 1 and 5
    # (u <= 0.9) cannot; window 2 is open with l_m = 0.0: every input with u > 0 can set it
    assert pool.needs_bounds(lower, upper).tolist() == [[True, False, True, True, True, False, True, False]]
    upper[0, 0] = 0.8  # now input 4 dominates window 1: nothing there needs tighter bounds
    assert pool.needs_bounds(lower, upper).tolist() == [[False, False, True, True, False, False, True, False]]


def _relu_pool_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 2), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(24, 8), nn.ReLU(), nn.Linear(8, 4)).double().eval()
    for p in model.parameters():
        p.data.mul_(1.5)
    return model


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crown_and_alpha_bounding_the_needed_neurons_equal_bounding_every_neuron(seed: int, monkeypatch) -> None:
    """The neurons `relaxation_needs` picks are all that change a relaxation: CROWN and alpha-CROWN
    with CROWN bounds for every hidden neuron give the same margins (a max-pool's open window is
    set by every input that can exceed its largest lower bound, as auto_LiRPA, which bounds every
    neuron, sets it)."""
    from advlab.exact import bounds

    net = relu_network(_relu_pool_cnn(seed), (1, 12, 12))
    x = _inputs(seed, n=4, side=12)
    labels = net.logits(x).argmax(1)
    xl, xu = box(x, 0.08, (0.0, 1.0))
    needed = margin_bounds(net, xl, xu, labels)
    alpha = alpha_margin_bounds(net, xl, xu, labels, steps=5, hidden_steps=0).lower
    monkeypatch.setattr(bounds, "relaxation_needs", lambda net, depth, lower, upper: torch.ones_like(lower, dtype=torch.bool))
    every = margin_bounds(net, xl, xu, labels)
    assert torch.allclose(needed, every, rtol=0, atol=1e-9)
    assert torch.allclose(alpha, alpha_margin_bounds(net, xl, xu, labels, steps=5, hidden_steps=0).lower, rtol=0, atol=1e-9)
