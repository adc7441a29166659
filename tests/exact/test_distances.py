"""minimal_distances: the closed form for affine models (any layers that compose to one affine
map), the MILP for ReLU networks, one result type."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from advlab.errors import InputError
from advlab.exact import MinimalDistances, minimal_distances, minimal_linf, minimal_perturbation
from advlab.models import LogisticRegression, Normalize, SoftmaxRegression


@pytest.mark.parametrize("norm", ["l2", "linf", "l1"])
def test_linear_model_equals_the_closed_form(norm: str) -> None:
    torch.manual_seed(0)
    model = SoftmaxRegression(in_features=16, num_classes=4).eval()
    x = torch.rand(10, 16, generator=torch.Generator().manual_seed(0))
    y = model(x).argmax(1)
    y[0] = (y[0] + 1) % 4
    result = minimal_distances(model, x, y, norm=norm)
    reference = minimal_perturbation(model, x, y, norm=norm)
    assert isinstance(result, MinimalDistances) and result.solver == "closed form"
    assert result.status[0] == "misclassified" and result.lower[0] == 0
    assert torch.allclose(result.lower[1:], reference.distance[1:], rtol=1e-12, atol=0)
    assert torch.equal(result.lower, result.upper)
    assert set(result.status[1:]) <= {"optimal", "unreachable"}
    assert torch.equal(result.witness[1:], reference.x_adv[1:].to(x.dtype))


def test_normalize_and_conv_without_relu_are_affine_too() -> None:
    """A Normalize + conv + linear stack is one affine map: closed form, equal to the same map
    written as one Linear layer."""
    torch.manual_seed(1)
    model = nn.Sequential(Normalize([0.5], [0.25]), nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).eval()
    x = torch.rand(6, 1, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = model.double()(x).argmax(1)
    result = minimal_distances(model, x, y, norm="l2")
    basis = torch.eye(36, dtype=torch.float64).reshape(36, 1, 6, 6)
    with torch.no_grad():
        bias = model(torch.zeros(1, 1, 6, 6, dtype=torch.float64))[0]
        weight = (model(basis) - bias).T
    linear = nn.Linear(36, 3).double()
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    reference = minimal_perturbation(linear, x.flatten(1), y, norm="l2")
    assert result.solver == "closed form"
    assert torch.allclose(result.lower, reference.distance, rtol=1e-9)


def test_logistic_regression_one_logit() -> None:
    torch.manual_seed(2)
    model = LogisticRegression(in_features=8).eval()
    x = torch.rand(7, 8, generator=torch.Generator().manual_seed(2))
    y = (model(x) > 0).long().flatten()
    result = minimal_distances(model, x, y, norm="linf")
    assert torch.allclose(result.lower, minimal_perturbation(model, x, y, norm="linf").distance, rtol=1e-12)


def test_relu_network_goes_to_the_milp_and_refuses_other_norms() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.rand(3, 5, generator=torch.Generator().manual_seed(3))
    y = model(x).argmax(1)
    result = minimal_distances(model, x, y, time_limit=30)
    assert result.solver == "MILP (HiGHS)" and result.norm == "linf"
    again = minimal_linf(model, x, y, time_limit=30)
    assert torch.allclose(result.lower, again.lower) and torch.allclose(result.upper, again.upper)
    with pytest.raises(InputError, match="linear model"):
        minimal_distances(model, x, y, norm="l2")
    with pytest.raises(InputError, match="norm"):
        minimal_distances(model, x, y, norm="l3")


def test_per_example_is_json_ready_with_one_entry_per_example() -> None:
    model = SoftmaxRegression(in_features=16, num_classes=4).eval()
    x = torch.rand(5, 16, generator=torch.Generator().manual_seed(1))
    result = minimal_distances(model, x, model(x).argmax(1))
    rows = json.loads(json.dumps(result.per_example()))
    assert sorted(rows) == ["lower", "seconds", "status", "target", "upper"]
    assert rows["status"] == result.status and rows["upper"] == result.upper.tolist()
    assert all(len(values) == 5 for values in rows.values())
