import pytest
import torch
from torch import nn

from advlab.analysis.units import label_purity, layer_activations, top_images, units_vs_directions
from advlab.errors import InputError
from advlab.models import build_model


def test_layer_activations_are_the_layer_outputs():
    torch.manual_seed(0)
    model = build_model("fc100-100-10")
    images = torch.rand(7, 1, 28, 28)
    got = layer_activations(model, model.act2, images, batch_size=3)
    with torch.no_grad():
        want = nn.Sequential(*list(model)[:5])(images)  # flatten, fc1, act1, fc2, act2
    assert torch.allclose(got, want)
    with pytest.raises(InputError, match="not a submodule"):
        layer_activations(model, nn.ReLU(), images)


def test_top_images_and_purity_closed_forms():
    activations = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [2.0, 5.0]])
    assert top_images(activations, torch.eye(2), 2).tolist() == [[1, 3], [3, 2]]
    assert label_purity(torch.tensor([[1, 1, 2, 1], [0, 1, 2, 3]])).tolist() == [0.75, 0.25]


def test_units_aligned_with_labels_are_pure():
    labels = torch.arange(10).repeat(30)
    activations = torch.nn.functional.one_hot(labels, 10).double() + 0.01 * torch.rand(300, 10, dtype=torch.float64)
    result = units_vs_directions(activations, labels, layer="toy", n_units=5, n_random=5, k=10, generator=torch.Generator().manual_seed(0))
    assert result.unit_purity == [1.0] * 5
    assert result.mean_unit_purity == 1.0
    assert 0.1 <= result.chance_purity < 0.5
    again = units_vs_directions(activations, labels, layer="toy", n_units=5, n_random=5, k=10, generator=torch.Generator().manual_seed(0))
    assert again == result
    with pytest.raises(InputError):
        units_vs_directions(activations, labels, layer="toy", n_units=11, n_random=1, k=3, generator=torch.Generator())
