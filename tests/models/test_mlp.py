"""MLP: shapes, registry presets, validation, and a checkpoint round trip through JSON."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advlab.errors import InputError
from advlab.models import MLP, build_model, get_spec, model_names
from advlab.training import load_checkpoint, save_checkpoint


@pytest.mark.parametrize(
    ("name", "widths"),
    [("mlp", [784, 100, 100, 10]), ("mlp-20-20", [784, 20, 20, 10]), ("mlp-50-50", [784, 50, 50, 10])],
)
def test_registered_presets_have_the_advertised_widths(name: str, widths: list[int]) -> None:
    assert name in model_names()
    model = build_model(name)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [linears[0].in_features] + [m.out_features for m in linears] == widths
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == len(widths) - 2
    assert model(torch.rand(5, 1, 28, 28)).shape == (5, 10)


@pytest.mark.parametrize(("activation", "cls"), [("relu", nn.ReLU), ("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh)])
def test_layers_are_in_forward_order(activation: str, cls: type[nn.Module]) -> None:
    model = MLP(12, (7, 5, 3), 4, activation)
    kinds = [type(m) for m in model]
    assert kinds == [nn.Flatten, nn.Linear, cls, nn.Linear, cls, nn.Linear, cls, nn.Linear]
    x = torch.rand(6, 3, 4)
    manual = x.flatten(1)
    for layer in list(model)[1:]:
        manual = layer(manual)
    assert torch.equal(model(x), manual)
    assert model(x).shape == (6, 4)


def test_no_hidden_layer_is_softmax_regression_shaped() -> None:
    model = MLP(10, (), 3)
    assert [type(m) for m in model] == [nn.Flatten, nn.Linear]
    assert model(torch.rand(2, 10)).shape == (2, 3)


@pytest.mark.parametrize(
    "kwargs",
    [{"hidden": (0, 5)}, {"hidden": (5.0,)}, {"in_features": -1}, {"num_classes": True}, {"activation": "gelu"}],
)
def test_bad_architecture_is_an_input_error(kwargs: dict) -> None:
    with pytest.raises(InputError):
        MLP(**kwargs)


def test_architecture_is_json_and_rebuilds_the_same_network() -> None:
    spec = get_spec("mlp-20-20")
    model = build_model("mlp-20-20")
    assert model.architecture() == {**spec.architecture, "hidden": [20, 20]}
    assert isinstance(build_model("mlp", hidden=[8, 4]), MLP)  # lists, as JSON gives them back


def test_checkpoint_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("mlp", hidden=(9, 7), activation="tanh").eval()
    path = tmp_path / "mlp.safetensors"
    save_checkpoint(path, model, model_name="mlp", architecture=model.architecture(), metadata={"seed": 0})
    loaded = load_checkpoint(path, expected_model="mlp")
    assert loaded.architecture == {"in_features": 784, "hidden": [9, 7], "num_classes": 10, "activation": "tanh"}
    assert isinstance(loaded.model, MLP) and loaded.model.hidden == (9, 7) and loaded.model.activation == "tanh"
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(loaded.model(x), model(x))
