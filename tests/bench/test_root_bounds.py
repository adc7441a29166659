"""bench/root_bounds.py's triangle LP on small random ReLU nets: its bounds hold for sampled
inputs and are never looser than alpha-CROWN's at any slopes (the LP is the limit of
alpha-CROWN over the same relaxation)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advlab.exact.bounds import hidden_bounds
from advlab.exact.optimized import optimise, optimised_hidden
from advlab.exact.relu_network import relu_network
from tests.bench import bench_script



@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lp_bounds_hold_and_are_at_least_alpha_tight(seed: int) -> None:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(),
                          nn.Linear(12, 3)).double()
    net = relu_network(model, (5,), bounds=(-1.0, 1.0))
    centre = torch.rand(5, dtype=torch.float64) - 0.5
    xl, xu = (centre - 0.3).unsqueeze(0), (centre + 0.3).unsqueeze(0)
    hidden = optimised_hidden(net, hidden_bounds(net, xl, xu), xl, xu, steps=20)
    rb = bench_script("root_bounds")
    samples = xl + (xu - xl) * torch.rand(4000, 5, dtype=torch.float64)
    samples = torch.cat([samples, torch.where(torch.rand(4000, 5) < 0.5, xl, xu)])  # corners too
    zs = net.pre_activations(samples)
    for depth in (1, 2):
        lo, up = rb.lp_bounds(net, hidden, xl[0], xu[0], depth)
        assert bool((zs[depth] >= lo - 1e-7).all()) and bool((zs[depth] <= up + 1e-7).all())
        old_lo, old_up = hidden[depth]
        assert bool((lo >= old_lo).all()) and bool((up <= old_up).all())
        width = lo.shape[1]
        eye = torch.eye(width, dtype=torch.float64)
        alpha = optimise(net, hidden, depth, torch.cat([eye, -eye]).unsqueeze(0), xl, xu, steps=100).upper
        unstable = (old_lo < 0) & (old_up > 0)
        assert bool((up <= alpha[:, :width] + 1e-6)[unstable].all())
        assert bool((lo >= -alpha[:, width:] - 1e-6)[unstable].all())
        hidden[depth] = (lo, up)
    assert any(bool(((lo < 0) & (up > 0)).any()) for lo, up in hidden[1:])  # the LPs had work to do
