import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advlab.errors import InputError
from advlab.models import MaxoutLinear, MaxoutNet, build_model, get_spec


@settings(max_examples=25, deadline=None)
@given(units=st.integers(1, 5), pieces=st.integers(1, 4), seed=st.integers(0, 1000))
def test_maxout_unit_is_the_max_of_its_affine_pieces(units, pieces, seed):
    torch.manual_seed(seed)
    layer = MaxoutLinear(6, units, pieces).double()
    x = torch.randn(7, 6, dtype=torch.float64)
    w = layer.linear.weight.view(units, pieces, 6)
    b = layer.linear.bias.view(units, pieces)
    expected = (torch.einsum("upi,ni->nup", w, x) + b).amax(dim=2)
    assert torch.allclose(layer(x), expected)


def test_registered_with_the_maxout_paper_sizes():
    spec = get_spec("maxout")
    assert spec.architecture["hidden"] == 240 and spec.architecture["pieces"] == 5
    model = build_model("maxout")
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert sum(isinstance(m, MaxoutLinear) for m in model.modules()) == 2


def test_dropout_is_random_in_train_mode_only():
    torch.manual_seed(0)
    model = MaxoutNet(hidden=16, pieces=2)
    x = torch.rand(4, 1, 28, 28)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize("kwargs", [{"hidden": 0}, {"pieces": 0}, {"layers": 0}, {"input_dropout": 1.0}, {"hidden_dropout": -0.1}])
def test_bad_sizes(kwargs):
    with pytest.raises(InputError):
        MaxoutNet(**kwargs)
