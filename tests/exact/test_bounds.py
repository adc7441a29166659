"""Interval and CROWN bounds are sound: no point of the box leaves them (random conv+pool nets)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advlab.exact import hidden_bounds, margin_bounds, relu_network, spec_bounds
from advlab.exact.bounds import box, certified_radii, interval_bounds, margin_rows
from tests.exact.nets import conv_net


def _points(xl: torch.Tensor, xu: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Uniform points and box corners (random sign patterns), (B, count, n)."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(xl.shape[0], count, xl.shape[1], generator=gen, dtype=torch.float64)
    u[:, : count // 4] = u[:, : count // 4].round()  # vertices of the box
    return xl.unsqueeze(1) + (xu - xl).unsqueeze(1) * u


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), pool=st.sampled_from(["max", "avg"]), eps=st.floats(0.0, 0.3),
       method=st.sampled_from(["interval", "crown"]))
def test_every_value_stays_within_its_bounds(seed: int, pool: str, eps: float, method: str) -> None:
    net = relu_network(conv_net(seed, pool=pool), (1, 8, 8))
    x = torch.rand(3, 64, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    xl, xu = box(x, eps, (0.0, 1.0))
    hidden = hidden_bounds(net, xl, xu, method=method)
    labels = torch.tensor([0, 1, 3])
    lower, upper = spec_bounds(net, hidden, margin_rows(labels, 4), xl, xu, method=method)
    points = _points(xl, xu, 2000, seed)
    zs = net.pre_activations(points.reshape(-1, 64))
    for (lo, up), z in zip(hidden, zs[:-1]):
        z = z.reshape(3, 2000, -1)
        assert bool((z >= lo.unsqueeze(1)).all() and (z <= up.unsqueeze(1)).all())
    logits = zs[-1].reshape(3, 2000, 4)
    margins = logits.gather(2, labels.view(3, 1, 1).expand(3, 2000, 1)) - logits  # z_y - z_k
    assert bool((margins >= lower.unsqueeze(1)).all() and (margins <= upper.unsqueeze(1)).all())


def test_crown_is_at_least_as_tight_as_interval_and_exact_at_eps_zero() -> None:
    net = relu_network(conv_net(5), (1, 8, 8))
    x = torch.rand(4, 64, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    labels = net.logits(x).argmax(1)
    xl, xu = box(x, 0.02, (0.0, 1.0))
    crown = margin_bounds(net, xl, xu, labels, method="crown")
    interval = margin_bounds(net, xl, xu, labels, method="interval")
    assert bool((crown >= interval - 1e-9).all())
    for (lo, up), (ilo, iup) in zip(hidden_bounds(net, xl, xu), interval_bounds(net, xl, xu)):
        assert bool((lo >= ilo - 1e-12).all() and (up <= iup + 1e-12).all())
    point = margin_bounds(net, x, x, labels)
    z = net.logits(x)
    exact = z.gather(1, labels[:, None]) - z
    finite = point.isfinite()
    assert torch.allclose(point[finite], exact[finite], atol=1e-7)


def test_certified_radii_hold_against_sampling() -> None:
    net = relu_network(conv_net(7), (1, 8, 8))
    x = torch.rand(64, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    label = int(net.logits(x[None]).argmax(1))
    radii = certified_radii(net, x, label, 0.2, (0.0, 1.0))
    assert radii[label] == float("inf")
    r = float(radii[torch.arange(4) != label].min())
    xl, xu = box(x[None], r, (0.0, 1.0))
    pred = net.logits(_points(xl, xu, 5000, 0)[0]).argmax(1)
    assert bool((pred == label).all())
