"""Early exit, best-so-far and the weight search."""

import pytest
import torch

from advlab.attacks.search import ActiveSet, BestSoFar, WeightSearch, exceeds, tie_tolerance


def test_active_set_retires_finished_rows():
    out = torch.zeros(5, 2)
    active = ActiveSet(out)
    values = torch.arange(10.0).view(5, 2)
    assert active.retire(torch.zeros(5, dtype=torch.bool), values) is None
    keep = active.retire(torch.tensor([True, False, True, False, False]), values)
    assert keep.tolist() == [1, 3, 4] and active.index.tolist() == [1, 3, 4]
    keep = active.retire(torch.tensor([False, True, False]), -values[keep])
    assert keep.tolist() == [0, 2] and not active.empty
    final = active.finish(torch.full((2, 2), 9.0))
    assert final.tolist() == [[0, 1], [9, 9], [4, 5], [-6, -7], [9, 9]]


def test_best_so_far_keeps_lower_scores_where_allowed():
    best = BestSoFar(torch.zeros(3, 1), torch.full((3,), torch.inf), c=torch.full((3,), torch.nan))
    taken = best.offer(torch.ones(3, 1), torch.tensor([1.0, 2.0, 3.0]), allowed=torch.tensor([True, False, True]), c=torch.ones(3))
    assert taken.tolist() == [True, False, True] and best.x.flatten().tolist() == [1, 0, 1]
    best.offer(torch.full((2, 1), 2.0), torch.tensor([0.5, 5.0]), index=torch.tensor([0, 2]), c=torch.full((2,), 2.0))
    assert best.x.flatten().tolist() == [2, 0, 1] and best.score.tolist() == [0.5, float("inf"), 3.0]
    assert best.values["c"].tolist()[0] == 2.0 and best.values["c"].tolist()[2] == 1.0


def test_weight_search_brackets_then_bisects():
    search = WeightSearch(torch.tensor([1.0]))
    threshold = 37.0  # success iff w <= threshold
    for _ in range(40):
        search.update(search.weight <= threshold)
    assert bool(search.settled().all()) and abs(float(search.best_success) - threshold) / threshold < 1e-4


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_exceeds_reads_rounding_as_a_tie(dtype):
    """A loss a few ulps above another (the same point in another batch shape) is no rise; a change
    well above the tolerance is, in both directions of sign and at any scale."""
    b = torch.tensor([-0.4859, 0.0, 3.0, -250.0], dtype=dtype)
    ulps = b + 8 * torch.finfo(dtype).eps * (1 + b.abs())
    assert not bool(exceeds(ulps, b).any()) and not bool(exceeds(b, b).any())
    assert bool(exceeds(b + 4 * tie_tolerance(dtype) * (1 + b.abs()), b).all())
    assert not bool(exceeds(b - 1, b).any())
    assert tie_tolerance(torch.float64) < 2e-12 and tie_tolerance(torch.float32) < 1e-5
