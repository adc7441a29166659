"""verify_property on random ReLU nets, boxes and linear output specs: `unsat` is never
contradicted by the MILP or an attack, `sat` always comes with a point the float64 model
confirms inside the box; and the falsification keeps moving where outputs saturate."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from advlab.attacks import PGD
from advlab.errors import InputError
from advlab.exact.encoding import INFEASIBLE, NumpyNetwork, meets, to_numpy
from advlab.exact.bounds import hidden_bounds
from advlab.exact.falsify import falsify
from advlab.exact.properties import verify_property
from advlab.exact.relu_network import relu_network
from advlab.exact.specs import robustness_property
from advlab.formats.vnnlib import Property
from tests.exact.nets import conv_net, random_mlp


def _random_property(seed: int, n: int, classes: int) -> Property:
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, generator=g, dtype=torch.float64)
    radius = 0.02 + 0.2 * torch.rand(n, generator=g, dtype=torch.float64)
    disjuncts = []
    for _ in range(1 + seed % 3):
        rows = 1 + int(torch.randint(0, 3, (1,), generator=g))
        c = torch.randn(rows, classes, generator=g, dtype=torch.float64)
        d = torch.randn(rows, generator=g, dtype=torch.float64)
        disjuncts.append((c, d))
    return Property(centre - radius, centre + radius, tuple(disjuncts), classes)


def _milp_feasible(model64: nn.Module, prop: Property) -> bool:
    net = relu_network(model64, (prop.num_inputs,), bounds=(float(prop.lower.min()), float(prop.upper.max())))
    xl, xu = prop.lower[None], prop.upper[None]
    hidden = to_numpy(hidden_bounds(net, xl, xu))
    solver = NumpyNetwork.of(net)
    found = False
    for c, d in prop.disjuncts:
        # a margin of 1e-7 keeps solutions that sit on the boundary from counting as contradictions
        res = meets(solver, hidden, xl[0].numpy(), xu[0].numpy(), c.numpy(), d.numpy() - 1e-7, 60)
        found |= res.status != INFEASIBLE
    return found


@pytest.mark.parametrize("seed", range(12))
def test_verdicts_are_sound_against_the_milp_and_attacks(seed: int) -> None:
    model = random_mlp(seed, (5, 12, 10, 4), scale=2.0)
    prop = _random_property(seed, 5, 4)
    verdict = verify_property(model, prop, timeout=60)
    model64 = copy.deepcopy(model).double()
    assert verdict.status in ("sat", "unsat")
    if verdict.status == "sat":
        x = verdict.counterexample
        assert bool(prop.inside(x[None]))
        with torch.no_grad():
            y = model64(x[None])
        assert bool(prop.violated(y)) and torch.equal(y[0], verdict.outputs)
    else:
        assert not _milp_feasible(model64, prop)
        assert falsify(model64, prop, (5,), steps=100, restarts=64, seed=seed + 100) is None


@pytest.mark.parametrize("seed", range(3))
def test_max_pool_networks_are_settled_with_the_milps_verdict(seed: int) -> None:
    model = conv_net(seed, pool="max")
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    label = int(model(x).argmax(1))
    for eps in (0.005, 0.1):
        prop = robustness_property(x[0], label, eps, (0.0, 1.0), 4)
        verdict = verify_property(model, prop, input_shape=(1, 8, 8), timeout=60)
        assert verdict.status in ("sat", "unsat")
        if verdict.status == "sat":
            assert int(copy.deepcopy(model).double()(verdict.counterexample.reshape(1, 1, 8, 8)).argmax(1)) != label
        else:
            assert not _milp_feasible_conv(model, prop)


def _milp_feasible_conv(model: nn.Module, prop: Property) -> bool:
    model64 = copy.deepcopy(model).double()
    net = relu_network(model64, (1, 8, 8))
    xl, xu = prop.lower[None], prop.upper[None]
    hidden = to_numpy(hidden_bounds(net, xl, xu))
    return any(meets(NumpyNetwork.of(net), hidden, xl[0].numpy(), xu[0].numpy(), c.numpy(), d.numpy() - 1e-7, 60).status
               != INFEASIBLE for c, d in prop.disjuncts)


class Saturating(nn.Module):
    """Two outputs (3 - s, 1 + s), s = clamp(sum(x) - 14, 0, 1) built from ReLUs: s = 0 (flat,
    zero gradient) on most of [0, 1]^20; class 1 wins only where sum(x) >= 15."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(20, 2)
        self.second = nn.Linear(2, 2)
        with torch.no_grad():
            self.first.weight.fill_(1.0)
            self.first.bias.copy_(torch.tensor([-14.0, -15.0]))
            self.second.weight.copy_(torch.tensor([[-1.0, 1.0], [1.0, -1.0]]))
            self.second.bias.copy_(torch.tensor([3.0, 1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(torch.relu(self.first(x)))


def test_saturated_outputs_are_falsified_where_margin_pgd_stalls() -> None:
    model = Saturating().eval()
    x = torch.full((1, 20), 0.5)
    prop = robustness_property(x[0], 0, 0.5, (0.0, 1.0), 2)
    pgd = PGD(model, eps=0.5, steps=100, loss="margin", seed=0)
    assert bool(model(pgd(x, torch.tensor([0])).x_adv).argmax(1) == 0)  # zero gradient at the start: stuck
    verdict = verify_property(model, prop, timeout=30)
    assert verdict.status == "sat"
    assert float(verdict.counterexample.sum()) >= 15 - 1e-9


def test_property_shape_mismatches_are_input_errors() -> None:
    model = random_mlp(0, (5, 6, 3))
    with pytest.raises(InputError, match="the property has 4 inputs"):
        verify_property(model, _random_property(0, 4, 3))
    with pytest.raises(InputError, match="the property has 4 outputs"):
        verify_property(model, _random_property(0, 5, 4))


def test_timeout_is_reported_and_bounds_the_call() -> None:
    model = random_mlp(1, (30, 64, 64, 64, 10), scale=1.0)
    g = torch.Generator().manual_seed(0)
    prop = Property(torch.zeros(30, dtype=torch.float64), torch.ones(30, dtype=torch.float64),
                    ((torch.randn(1, 10, generator=g, dtype=torch.float64), torch.tensor([-1e3], dtype=torch.float64)),), 10)
    verdict = verify_property(model, prop, timeout=0.5)
    assert verdict.status in ("timeout", "unsat") and verdict.seconds < 1.0  # the deadline is checked inside each step
    np.testing.assert_array_less(0, verdict.seconds)
