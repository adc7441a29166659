"""Filtered smart branching: the bound `split_children_bounds` gives each child of a candidate
split is the one its sub-domain's own bound computes (same slopes, multipliers, new split's
multiplier 0), and it holds on every sampled input that meets the child's splits."""

from __future__ import annotations

import pytest
import torch

from advlab.exact import relu_network
from advlab.exact.bounds import hidden_bounds
from advlab.exact.branching import split_bounds, split_children_bounds
from advlab.exact.optimized import back_substitute
from tests.exact.nets import random_mlp


def _instance(seed: int):
    """A 6-10-10-4 net, a box, three sub-domains with random splits, slopes and multipliers, and
    k = 3 unsplit unstable candidates per sub-domain."""
    gen = torch.Generator().manual_seed(seed)
    net = relu_network(random_mlp(seed, (6, 10, 10, 4), scale=2.0).double(), (6,))
    x = torch.rand(1, 6, generator=gen, dtype=torch.float64)
    xl, xu = (x - 0.3).clamp_min(0.0), (x + 0.3).clamp_max(1.0)
    root = hidden_bounds(net, xl, xu)
    d, rows = 3, 2
    unstable = torch.cat([(lo < 0) & (up > 0) for lo, up in root], 1)[0].nonzero().flatten()
    assert len(unstable) >= 5, "the instance needs unstable neurons"
    signs, candidates = [torch.zeros(d, lo.shape[1], dtype=torch.float64) for lo, _ in root], []
    for i in range(d):
        pick = unstable[torch.randperm(len(unstable), generator=gen)]
        for flat in pick[:2].tolist():  # two existing splits
            layer, at = divmod(flat, 10)
            signs[layer][i, at] = 1.0 if torch.rand(1, generator=gen) < 0.5 else -1.0
        candidates.append(pick[2:5])
    alphas = [torch.rand(d, rows, 10, generator=gen, dtype=torch.float64) for _ in root]
    betas = [torch.rand(d, rows, 10, generator=gen, dtype=torch.float64) * (s != 0).unsqueeze(1) for s in signs]
    spec = torch.randn(d, rows, 4, generator=gen, dtype=torch.float64)
    offsets = torch.randn(d, rows, generator=gen, dtype=torch.float64)
    base = [(lo.expand(d, -1), up.expand(d, -1)) for lo, up in root]
    return net, xl, xu, base, signs, alphas, betas, spec, offsets, torch.stack(candidates)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_child_bounds_are_each_childs_own_bound_and_hold_on_samples(seed: int) -> None:
    net, xl, xu, base, signs, alphas, betas, spec, offsets, candidates = _instance(seed)
    children = split_children_bounds(net, base, signs, alphas, betas, spec, offsets, candidates, xl, xu)
    d, k = candidates.shape
    assert children.shape == (2, k, d)
    samples = xl + (xu - xl) * torch.rand(20_000, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    zs = net.pre_activations(samples)
    for side, sign in enumerate((1.0, -1.0)):
        for j in range(k):
            for i in range(d):
                layer, at = divmod(int(candidates[i, j]), 10)
                child = [s[i : i + 1].clone() for s in signs]
                child[layer][0, at] = sign
                hidden = split_bounds(net, [(lo[i : i + 1], up[i : i + 1]) for lo, up in base], child)
                own = back_substitute(net, hidden, len(net.nonlinear), -spec[i : i + 1], xl, xu,
                                      [a[i : i + 1] for a in alphas], [b[i : i + 1] for b in betas], child).upper
                expected = float((-own - offsets[i]).amax())
                assert float(children[side, j, i]) == pytest.approx(expected, abs=1e-10)
                meets = torch.ones(len(samples), dtype=torch.bool)
                for z, s in zip(zs, child):
                    meets &= ((z * s) >= 0).all(1)
                if bool(meets.any()):
                    values = (zs[-1][meets] @ spec[i].T - offsets[i]).amax(1)
                    assert float(values.min()) >= float(children[side, j, i]) - 1e-9
