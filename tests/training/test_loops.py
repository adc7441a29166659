import pytest
import torch

from advlab.errors import InputError
from advlab.models import build_model
from advlab.training import TrainConfig, error_rate, train_model, train_registered


def _weights(data, seed):
    model = train_registered("logreg", data, TrainConfig(epochs=2, seed=seed, weight_decay=1e-3), progress=False).model
    return model.linear.weight.detach().clone()


def test_training_is_deterministic_given_a_seed(embedded_37):
    data = embedded_37.train.take(300)
    assert torch.equal(_weights(data, 1), _weights(data, 1))
    assert not torch.equal(_weights(data, 1), _weights(data, 2))


def test_trained_linear_models_learn(logreg_37, softmax_model, embedded_37, embedded):
    assert error_rate(logreg_37, embedded_37.test) < 0.05
    assert error_rate(softmax_model, embedded.test) < 0.15


@pytest.mark.parametrize("kwargs", [{"epochs": 0}, {"lr": 0.0}, {"weight_decay": -1.0}, {"optimizer": "lbfgs"}])
def test_bad_config(kwargs):
    with pytest.raises(InputError):
        TrainConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"lr": float("inf")}, {"lr": float("nan")}, {"weight_decay": float("inf")}, {"epochs": 2.5},
               {"batch_size": True}, {"seed": "0"}],
)
def test_non_finite_and_non_integer_settings_are_refused(kwargs):
    with pytest.raises(InputError):
        TrainConfig(**kwargs)


def test_labels_beyond_the_models_classes_are_refused_before_training(embedded):
    data = embedded.select_classes([3, 7, 1]).train.take(50)
    model = build_model("logreg")
    before = model.linear.weight.detach().clone()
    with pytest.raises(InputError, match="labels run from 0 to 2 but the model has 2 classes"):
        train_model(model, data, TrainConfig(epochs=1), progress=False)
    assert torch.equal(model.linear.weight, before)
