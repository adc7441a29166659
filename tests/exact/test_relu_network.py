"""Reading a model as a ReLU network: the reading reproduces the model's forward in float64."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from advlab.exact import UnsupportedModelError, relu_network
from advlab.exact.relu_network import DENSE_LIMIT, MaxPool, Relu
from advlab.models import MLP, LogisticRegression, as_multiclass_logits, build_model
from tests.exact.nets import Nested, conv_net


def _agrees(model: nn.Module, shape: tuple[int, ...], n: int = 16, tol: float = 1e-12) -> None:
    net = relu_network(model, shape)
    x = torch.rand(n, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = as_multiclass_logits(copy.deepcopy(model).double()(x))
    got = net.logits(x.flatten(1))
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) <= tol * (1 + float(expected.abs().max()))


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_conv_pool_normalize_stack_reads_exactly(pool: str) -> None:
    _agrees(conv_net(0, pool=pool), (1, 8, 8))


def test_nested_modules_with_a_reshape_in_forward_and_one_logit() -> None:
    model = Nested().eval()
    net = relu_network(model, (1, 8, 8))
    assert net.num_classes == 2  # one logit z is read as [0, z]
    _agrees(model, (1, 8, 8))


def test_registered_models_read_without_special_cases() -> None:
    _agrees(build_model("logreg"), (1, 28, 28), n=4)
    _agrees(MLP(12, (7, 5), 4), (12,))
    _agrees(LogisticRegression(in_features=6), (6,))


def test_cnn_conv_layers_become_sparse_affine_maps() -> None:
    model = build_model("cnn")
    net = relu_network(model, (1, 28, 28))
    conv = net.affines[0]
    assert conv.weight.shape == (16 * 24 * 24, 784)
    assert conv.sparse == (conv.weight.shape[0] * conv.weight.shape[1] > DENSE_LIMIT)
    # the model's order, ReLU before max-pool (the order auto_LiRPA bounds too)
    assert [type(g) for g in net.nonlinear] == [Relu, MaxPool, Relu, MaxPool, Relu]
    assert [len(a.ops) for a in net.affines] == [1, 0, 1, 0, 1, 1]
    _agrees(model, (1, 28, 28), n=4, tol=1e-11)


def test_conv_matrix_columns_are_the_convolution_of_basis_vectors() -> None:
    torch.manual_seed(3)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1).double()
    net = relu_network(nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(48, 2).double()), (2, 7, 7))
    basis = torch.eye(98, dtype=torch.float64).reshape(98, 2, 7, 7)
    with torch.no_grad():
        expected = (conv(basis) - conv.bias.view(1, -1, 1, 1)).flatten(1).T
    assert torch.equal(net.affines[0].dense(), torch.nn.functional.conv2d(basis, conv.weight, None, 2, 1).flatten(1).T)
    assert torch.allclose(net.affines[0].dense(), expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("model", "shape", "message"),
    [
        (nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 2)), (4,), "Sigmoid"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 2)), (1, 4, 4), "BatchNorm2d"),
    ],
)
def test_unsupported_layer_is_named(model: nn.Module, shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(UnsupportedModelError, match=message):
        relu_network(model, shape)


def test_functional_activation_in_forward_is_refused() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 5), nn.Linear(5, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.tanh(self.a(x)))

    with pytest.raises(UnsupportedModelError, match="not a chain"):
        relu_network(Functional(), (4,))


def test_skip_connection_is_refused() -> None:
    class Skip(nn.Sequential):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self[0](x) + self[2](self[1](self[0](x)))

    with pytest.raises(UnsupportedModelError, match="chain"):
        relu_network(Skip(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)), (4,))
