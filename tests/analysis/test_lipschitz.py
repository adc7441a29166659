import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from advlab.analysis.lipschitz import (
    conv2d_bound,
    layer_bounds,
    linear_bound,
    maxpool_bound,
    network_bound,
    observed_ratio,
    power_iteration,
)
from advlab.errors import InputError
from advlab.models import Normalize, build_model


def _conv_operator(conv):
    return lambda x: F.conv2d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups) if conv.padding_mode == "zeros" else conv._conv_forward(x, conv.weight, None)


def test_linear_bound_is_the_largest_singular_value():
    layer = nn.Linear(30, 20)
    assert linear_bound(layer) == pytest.approx(float(torch.linalg.svdvals(layer.weight.detach().double())[0]), rel=1e-12)


def test_fft_bound_is_exact_for_circular_convolution():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, padding=1, padding_mode="circular").double()
    exact = power_iteration(_conv_operator(conv), (1, 3, 9, 9), steps=500)
    assert conv2d_bound(conv, (9, 9)) == pytest.approx(exact, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [{"padding": 1}, {"padding": 0}, {"padding": 2, "stride": 2}, {"padding": 1, "groups": 2}, {"padding": "same", "dilation": 2}, {"kernel_size": 5, "padding": 2}],
)
def test_fft_bound_is_an_upper_bound_close_to_the_norm(kwargs):
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 6, **{"kernel_size": 3, **kwargs}).double()
    norm = power_iteration(_conv_operator(conv), (1, 4, 10, 10), steps=400)
    bound = conv2d_bound(conv, (10, 10))
    assert norm <= bound * (1 + 1e-9)
    assert bound < 1.6 * norm  # the bound is not vacuous


def test_power_iteration_matches_svd():
    matrix = torch.randn(12, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert power_iteration(lambda v: matrix @ v, (7,), steps=500) == pytest.approx(float(torch.linalg.svdvals(matrix)[0]), rel=1e-8)


def test_maxpool_bound_counts_overlapping_windows():
    assert maxpool_bound(nn.MaxPool2d(2)) == 1.0
    assert maxpool_bound(nn.MaxPool2d(3, stride=1)) == 3.0
    assert maxpool_bound(nn.MaxPool2d(3, stride=2)) == 2.0


def _small_cnn():
    """14x14 -> conv 14x14 -> pool (overlapping) 6x6 -> conv stride 2 2x2 -> 10 logits."""
    return nn.Sequential(
        Normalize([0.5], [0.25]), nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, stride=2),
        nn.Conv2d(4, 6, 3, stride=2), nn.Tanh(), nn.Flatten(), nn.Linear(6 * 2 * 2, 10),
    ).double()


torch.manual_seed(0)
MODELS = [
    (_small_cnn(), (1, 14, 14)),
    (build_model("fc100-100-10").double(), (1, 28, 28)),
    (build_model("ae400-10").double(), (1, 28, 28)),
    (build_model("fc10-1").double(), (1, 28, 28)),
    (build_model("cnn").double(), (1, 28, 28)),
]
BOUNDS = [network_bound(layer_bounds(model, torch.rand(2, *shape, dtype=torch.float64))) for model, shape in MODELS]


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(1e-4, 1.0))
def test_no_pair_of_inputs_beats_the_network_bound(seed, scale):
    g = torch.Generator().manual_seed(seed)
    for (model, shape), bound in zip(MODELS, BOUNDS):
        x = torch.rand(8, *shape, generator=g, dtype=torch.float64)
        x_new = (x + scale * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
        assert float(observed_ratio(model, x, x_new).nan_to_num(0).max()) <= bound * (1 + 1e-9)


def test_layer_bounds_of_an_mlp():
    torch.manual_seed(0)
    model = build_model("fc100-100-10")
    bounds = layer_bounds(model, torch.rand(2, 1, 28, 28))
    assert [b.name for b in bounds] == ["flatten", "fc1", "act1", "fc2", "act2", "out"]
    assert [b.bound for b in bounds if b.kind == "Sigmoid"] == [0.25, 0.25]
    expected = 0.25**2 * math.prod(linear_bound(layer) for layer in (model.fc1, model.fc2, model.out))
    assert network_bound(bounds) == pytest.approx(expected, rel=1e-12)


def test_observed_ratio_is_nan_without_a_perturbation():
    model = build_model("fc10-1")
    x = torch.rand(2, 1, 28, 28)
    assert bool(observed_ratio(model, x, x).isnan().all())


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)

    def forward(self, x):
        return self.b(self.a(x) + x)


def test_models_that_are_not_chains_or_have_unknown_layers_are_refused():
    with pytest.raises(InputError, match="chain of layers"):
        layer_bounds(Residual(), torch.rand(2, 4))
    with pytest.raises(InputError, match="no Lipschitz bound for layer type Softplus"):
        layer_bounds(nn.Sequential(nn.Linear(4, 4), nn.Softplus()), torch.rand(2, 4))
    with pytest.raises(InputError, match="circular padding"):
        conv2d_bound(nn.Conv2d(1, 1, 3, padding=2, padding_mode="circular"), (8, 8))


def test_contrast_normalization_bound_holds_and_is_attained_at_zero():
    import math

    import pytest

    from advlab.analysis.lipschitz import contrast_normalization_bound
    from advlab.errors import InputError

    generator = torch.Generator().manual_seed(0)
    for eps, gamma in ((0.1, 0.5), (1.0, 1.0), (0.01, 0.75), (2.0, 0.3)):
        bound = contrast_normalization_bound(eps, gamma)
        phi = lambda x: x / (eps + x.pow(2).sum(-1, keepdim=True)) ** gamma  # noqa: E731
        x = torch.randn(2000, 5, generator=generator, dtype=torch.float64) * torch.rand(2000, 1, generator=generator, dtype=torch.float64) * 3
        r = torch.randn(2000, 5, generator=generator, dtype=torch.float64) * 0.1
        ratios = (phi(x + r) - phi(x)).norm(dim=1) / r.norm(dim=1)
        assert float(ratios.max()) <= bound * (1 + 1e-12)
        tiny = torch.zeros(1, 5, dtype=torch.float64)
        step = torch.full((1, 5), 1e-6, dtype=torch.float64)
        assert float((phi(tiny + step) - phi(tiny)).norm() / step.norm()) == pytest.approx(bound, rel=1e-6)
    assert contrast_normalization_bound(0.25, 0.5) == pytest.approx(2.0) and math.isclose(contrast_normalization_bound(1, 0), 1)
    with pytest.raises(InputError):
        contrast_normalization_bound(0.0, 0.5)


def test_overlapping_max_pool_attains_sqrt_m():
    """The paper's 'max-pooling is contractive' fails with overlap: a pixel in m windows gives sqrt(m)."""
    pool = nn.MaxPool2d(3, stride=1)
    x = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    r = torch.zeros_like(x)
    r[0, 0, 2, 2] = 1.0  # the centre pixel is in all 9 windows
    ratio = float((pool(x + r) - pool(x)).norm() / r.norm())
    assert ratio == pytest.approx(3.0) and ratio == pytest.approx(maxpool_bound(pool))
