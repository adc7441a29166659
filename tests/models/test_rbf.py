"""The RBF network: sigmoid(output) is exp((x - mu)^T beta (x - mu)) with beta = -diag(exp(s))."""

from __future__ import annotations

import math

import pytest
import torch

from advlab.errors import InputError
from advlab.models import build_model
from advlab.models.rbf import RBFNetwork, log1mexp


def test_outputs_are_the_log_odds_of_the_gaussian_units():
    model = build_model("rbf", seed=3, in_features=6, num_classes=3).double()
    x = torch.rand(5, 1, 2, 3, dtype=torch.float64)
    q = -((x.flatten(1)[:, None, :] - model.centers) ** 2 * model.log_precision.exp()).sum(-1)
    assert torch.allclose(torch.sigmoid(model(x)), q.exp(), atol=1e-12)
    assert torch.equal(model(x).argmax(1), q.argmax(1))


def test_seeded_and_refuses_too_few_classes():
    a, b = build_model("rbf", seed=1), build_model("rbf", seed=1)
    assert torch.equal(a.centers, b.centers)
    with pytest.raises(InputError):
        RBFNetwork(4, 1)


@pytest.mark.parametrize("q", [-1e-8, -0.1, -math.log(2), -5.0, -50.0])
def test_log1mexp_is_accurate(q):
    value = float(log1mexp(torch.tensor(q, dtype=torch.float64)))
    assert value == pytest.approx(math.log(-math.expm1(q)), rel=1e-12)
