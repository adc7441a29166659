"""Target selection: MALT's ranking is the exact distance ranking on linear models; batch-invariant."""

import pytest
import torch
from torch import nn

from advlab.attacks import APGDT, FABT
from advlab.attacks.targeting import MALT_CANDIDATES, rank_targets
from advlab.errors import InputError
from tests.invariance import assert_same_per_example

DUAL = {"linf": 1, "l2": 2, "l1": float("inf")}  # the dual norm's order


def _linear(classes: int = 10, inputs: int = 20) -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(inputs, classes).double().eval()


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_malt_ranks_a_linear_model_by_the_exact_distance_to_each_boundary(norm):
    """For logits W x + b the boundary between the prediction y and class j is at distance
    (z_y - z_j) / ||w_y - w_j||_* (unbounded input; Melamed et al. 2024, Sec. 3): MALT's ranking
    is exactly that order, which the confidence ranking (by z_j alone) is not."""
    model = _linear()
    x = torch.rand(64, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    attack = APGDT(model, eps=0.1, norm=norm, target_ranking="malt", progress=False)
    ranked = rank_targets(attack, x, 9, "malt")
    with torch.no_grad():
        z = model(x)
    y = z.argmax(1)
    gap = z.gather(1, y[:, None]) - z  # (N, C)
    w = model.weight.detach()
    dual = torch.linalg.vector_norm(w[y][:, None, :] - w[None, :, :], ord=DUAL[norm], dim=2)  # (N, C)
    distance = torch.where(torch.arange(10)[None, :] == y[:, None], torch.inf, gap / dual)
    expected = distance.argsort(dim=1)[:, :9]
    assert torch.equal(ranked, expected)
    assert not torch.equal(ranked, rank_targets(attack, x, 9, "confidence"))
    assert torch.equal(rank_targets(attack, x, 3, "malt"), expected[:, :3])


def test_malt_scores_the_most_likely_candidates_only():
    model = _linear(classes=MALT_CANDIDATES + 20, inputs=8)
    x = torch.rand(5, 8, dtype=torch.float64)
    attack = APGDT(model, eps=0.1, target_ranking="malt", progress=False)
    ranked = rank_targets(attack, x, MALT_CANDIDATES, "malt")
    likely = model(x).argsort(dim=1, descending=True)[:, 1 : MALT_CANDIDATES + 1]
    assert torch.equal(ranked.sort(1).values, likely.sort(1).values)


@pytest.mark.invariance
@pytest.mark.parametrize("cls,kwargs", [(APGDT, {"steps": 10}), (FABT, {"steps": 10})])
def test_malt_targets_do_not_depend_on_the_batch(cls, kwargs):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).double().eval()
    x = torch.rand(30, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(1)
    attack = cls(model, eps=0.05, targets=3, target_ranking="malt", progress=False, **kwargs)
    whole = attack(x, y)
    pieces = cls(model, eps=0.05, targets=3, target_ranking="malt", batch_size=7, progress=False, **kwargs)(x, y)
    assert_same_per_example(whole, pieces)
    assert torch.equal(rank_targets(attack, x, 3, "malt")[5:12], rank_targets(attack, x[5:12], 3, "malt"))


def test_unknown_ranking_is_refused():
    with pytest.raises(InputError, match="target_ranking must be one of confidence, malt"):
        APGDT(_linear(), eps=0.1, target_ranking="likely")
