"""The attack objectives against their formulas (Croce & Hein 2020 for DLR) and rival selection."""

import pytest
import torch

from advlab.attacks.losses import cross_entropy, dlr, margin, smooth_margin, targeted_dlr, top_rivals

Z = torch.tensor([[3.0, 1.0, 2.0, -1.0, 0.5], [0.0, 4.0, 1.0, 2.0, 3.0]], dtype=torch.float64)


def test_margin_signs():
    y = torch.tensor([0, 1])
    assert torch.equal(margin(Z, y, False), torch.tensor([2.0 - 3.0, 3.0 - 4.0], dtype=torch.float64))
    t = torch.tensor([2, 4])
    assert torch.equal(margin(Z, t, True), torch.tensor([2.0 - 3.0, 3.0 - 4.0], dtype=torch.float64))
    assert bool((margin(Z, torch.tensor([1, 0]), False) > 0).all())  # misclassified: positive


def test_dlr_matches_the_paper():
    y = torch.tensor([0, 2])
    # sorted row 0: 3, 2, 1, 0.5, -1; row 1: 4, 3, 2, 1, 0
    expected = torch.tensor([-(3 - 2) / (3 - 1), -(1 - 4) / (4 - 2)], dtype=torch.float64)
    torch.testing.assert_close(dlr(Z, y), expected)
    t = torch.tensor([2, 1])
    expected_t = torch.tensor([-(3 - 2) / (3 - (1 + 0.5) / 2), -(1 - 4) / (4 - (2 + 1) / 2)], dtype=torch.float64)
    torch.testing.assert_close(targeted_dlr(Z, y, t), expected_t)
    # invariant to shifting and positive scaling of the logits
    torch.testing.assert_close(dlr(2.5 * Z + 7, y), dlr(Z, y))
    torch.testing.assert_close(targeted_dlr(2.5 * Z - 3, y, t), targeted_dlr(Z, y, t))


def test_smooth_margin_limits_and_ce():
    y = torch.tensor([0, 1])
    hard = -margin(Z, y, False)
    torch.testing.assert_close(smooth_margin(Z, y, False, 1e-4), hard, atol=1e-3, rtol=0)
    t = torch.tensor([2, 4])
    ce = torch.nn.functional.softplus(smooth_margin(Z, t, True, 1.0))
    torch.testing.assert_close(ce, -cross_entropy(Z, t, True))


def test_top_rivals():
    assert top_rivals(Z, torch.tensor([0, 1]), 2).tolist() == [[2, 1], [4, 3]]
    assert top_rivals(Z, torch.tensor([0, 1]), 99).shape == (2, 4)


@pytest.mark.parametrize("targeted", [False, True])
def test_cross_entropy_sign(targeted):
    y = torch.tensor([0, 1])
    ce = torch.nn.functional.cross_entropy(Z, y, reduction="none")
    torch.testing.assert_close(cross_entropy(Z, y, targeted), -ce if targeted else ce)
