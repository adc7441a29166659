import pytest
import torch

from advlab.errors import InputError
from advlab.models import SmallCNN, build_model, get_spec
from advlab.training import TrainConfig, error_rate, train_model


def test_registered_shapes_and_input_gradient():
    model = build_model("cnn")
    assert get_spec("cnn").architecture["conv1"] == 16
    x = torch.rand(5, 1, 28, 28, requires_grad=True)
    out = model(x)
    assert out.shape == (5, 10)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad.shape == x.shape and bool(grad.abs().sum() > 0)


def test_other_image_sizes():
    assert SmallCNN(channels=3, size=32, num_classes=4)(torch.rand(2, 3, 32, 32)).shape == (2, 4)


@pytest.mark.parametrize("kwargs", [{"size": 12}, {"conv1": 0}, {"hidden": 0}])
def test_bad_sizes(kwargs):
    with pytest.raises(InputError):
        SmallCNN(**kwargs)


def test_learns_quickly(embedded):
    torch.manual_seed(0)
    model = SmallCNN()
    train_model(model, embedded.train.take(1000), TrainConfig(epochs=2, lr=1e-3, seed=0), progress=False)
    assert error_rate(model, embedded.test.take(300)) < 0.3
