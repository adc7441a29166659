import pytest
import torch

from advlab.errors import InputError, UnknownNameError
from advlab.models import LogisticRegression, Normalize, as_multiclass_logits, build_model, model_names


def test_registry_builds_linear_models():
    assert {"logreg", "softmax"} <= set(model_names())
    assert isinstance(build_model("logreg"), LogisticRegression)
    assert build_model("softmax")(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert build_model("logreg")(torch.zeros(3, 1, 28, 28)).shape == (3, 1)


def test_unknown_model_lists_known_names():
    with pytest.raises(UnknownNameError, match="unknown model 'nope'.*logreg"):
        build_model("nope")


def test_single_logit_becomes_logistic_cross_entropy():
    z = torch.randn(6, 1, dtype=torch.float64)
    y = torch.randint(0, 2, (6,))
    ce = torch.nn.functional.cross_entropy(as_multiclass_logits(z), y, reduction="none")
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z[:, 0], y.double(), reduction="none")
    torch.testing.assert_close(ce, bce)
    assert torch.equal(as_multiclass_logits(z.flatten()), as_multiclass_logits(z))
    with pytest.raises(InputError, match="logits"):
        as_multiclass_logits(torch.zeros(2, 3, 4))


def test_normalize_layer():
    layer = Normalize([0.5], [0.25])
    torch.testing.assert_close(layer(torch.ones(1, 1, 2, 2)), torch.full((1, 1, 2, 2), 2.0))
    with pytest.raises(InputError, match="std"):
        Normalize([0.0], [0.0])
