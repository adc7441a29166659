"""The sub-domains of branch and bound carry a split multiplier tensor on a layer exactly where
they carry split signs (None on a max-pool, which is never split), through the root, the
rounds, their splitting and merging, and the hidden-bound refinement: `back_substitute` relies
on it and tests only the multipliers."""

from __future__ import annotations

import sys

import torch

import advlab.exact.optimized as optimized
from advlab.exact.bab import BabSettings
from tests.exact.test_bab_pool import _decide, pool_net

bab_module = sys.modules["advlab.exact.bab"]


def test_every_back_substitution_gets_multipliers_exactly_on_the_split_layers(monkeypatch) -> None:
    seen: list[tuple[list[bool], list[bool]]] = []

    def spy(inner):
        def recorded(net, hidden, depth, lam, xl, xu, alphas, betas, signs):
            seen.append(([b is None for b in betas[:depth]], [s is None for s in signs[:depth]]))
            return inner(net, hidden, depth, lam, xl, xu, alphas, betas, signs)
        return recorded

    monkeypatch.setattr(optimized, "back_substitute", spy(optimized.back_substitute))  # inside optimise
    monkeypatch.setattr(bab_module, "back_substitute", spy(bab_module.back_substitute))  # float64 pass, refine
    model = pool_net(4)
    x = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(4))
    y = model(x).argmax(1)
    _decide(model, x, y, 0.2, BabSettings(batch=8, steps=2, root_steps=2, max_splits=2, refine=True, max_domains=64),
            time_limit=10)
    assert all(betas == signs for betas, signs in seen)
    assert any(any(signs) and not all(signs) for _, signs in seen)  # a pass with split ReLUs and the unsplit pool
