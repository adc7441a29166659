import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advlab.analysis.noise import equal_norm_noise, gaussian_noise, perturb_to_norm
from advlab.errors import InputError


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), fraction=st.floats(0.0, 0.99))
def test_perturb_to_norm_hits_the_norm_inside_the_box_along_the_direction(seed, fraction):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 1, 5, 5, generator=g).double()
    x[:, :, :2] = 0.0  # pixels at the bound, as in MNIST backgrounds
    d = torch.randn(x.shape, generator=g, dtype=torch.float64)
    farthest = (torch.where(d > 0, 1 - x, torch.where(d < 0, x, torch.zeros_like(x)))).flatten(1).norm(dim=1)
    norms = fraction * farthest
    out = perturb_to_norm(x, d, norms)
    r = out - x
    assert torch.allclose(r.flatten(1).norm(dim=1), norms, rtol=1e-9, atol=1e-12)
    assert out.min() >= 0 and out.max() <= 1
    assert bool(((r * d) >= 0).all())  # every pixel moves along d (or not at all)


def test_unreachable_norm_gives_the_farthest_point_and_zero_norm_gives_x():
    x = torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64)
    d = torch.tensor([[1.0, -1.0, 1.0]], dtype=torch.float64)
    out = perturb_to_norm(x, d, torch.tensor([10.0], dtype=torch.float64))
    assert torch.equal(out, torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64))
    assert torch.equal(perturb_to_norm(x, d, torch.zeros(1, dtype=torch.float64)), x)
    # without the box: exactly t * d with t = norm / ||d||
    inside = torch.full((1, 3), 0.5, dtype=torch.float64)
    out = perturb_to_norm(inside, d, torch.tensor([0.3], dtype=torch.float64))
    assert torch.allclose(out - inside, 0.3 * d / math.sqrt(3), atol=1e-12)


@pytest.mark.parametrize("kind", ["gaussian", "uniform"])
def test_equal_norm_noise_is_seeded_and_exact(kind):
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    norms = torch.linspace(0.1, 1.5, 6, dtype=torch.float64)
    a = equal_norm_noise(x, norms, kind, torch.Generator().manual_seed(1))
    b = equal_norm_noise(x, norms, kind, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.dtype == x.dtype
    assert torch.allclose((a - x).double().flatten(1).norm(dim=1), norms, rtol=1e-5)


def test_gaussian_noise_is_seeded_and_clipped_only_on_request():
    x = torch.rand(3, 1, 4, 4)
    a = gaussian_noise(x, 0.3, torch.Generator().manual_seed(2))
    assert torch.equal(a, gaussian_noise(x, 0.3, torch.Generator().manual_seed(2)))
    assert a.min() < 0 or a.max() > 1  # unclipped by default, as in Szegedy's Table 2
    clipped = gaussian_noise(x, 0.3, torch.Generator().manual_seed(2), bounds=(0.0, 1.0))
    assert torch.equal(clipped, a.clamp(0, 1)) and not torch.equal(clipped, x)


@pytest.mark.parametrize("stddev", [0.1, 0.3])
def test_unclipped_noise_has_the_requested_distortion_within_sampling_error(stddev):
    """Per image, sqrt(mean r^2) = stddev * sqrt(chi2_m / m): mean stddev * (1 - 1/(4m) + ...), standard
    deviation stddev / sqrt(2m); over n images the mean is within 5 of its standard errors."""
    n, m = 300, 784
    x = torch.rand(n, 1, 28, 28)
    r = gaussian_noise(x, stddev, torch.Generator().manual_seed(3)) - x
    measured = r.double().flatten(1).pow(2).mean(1).sqrt().mean()
    standard_error = stddev / math.sqrt(2 * m) / math.sqrt(n)
    assert abs(float(measured) - stddev * (1 - 1 / (4 * m))) < 5 * standard_error


def test_bad_input():
    x = torch.rand(2, 3)
    with pytest.raises(InputError, match="noise kind"):
        equal_norm_noise(x, torch.ones(2), "laplace", torch.Generator())
    with pytest.raises(InputError, match="do not match"):
        perturb_to_norm(x, torch.rand(2, 4), torch.ones(2))


def test_directions_with_entries_of_wildly_different_sizes():
    """An adversarial r has entries near 0: the t that saturates them is astronomically large."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 50, generator=g, dtype=torch.float64)
    d = torch.randn(3, 50, generator=g, dtype=torch.float64) * 10.0 ** -torch.randint(0, 300, (3, 50), generator=g)
    d[:, :5] = 0.1 * torch.randn(3, 5, generator=g, dtype=torch.float64)
    norms = torch.tensor([0.05, 0.3, 1.0], dtype=torch.float64)
    out = perturb_to_norm(x, d, norms)
    assert torch.allclose((out - x).norm(dim=1), norms, rtol=1e-9)
