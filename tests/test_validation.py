"""The one place for argument checks: each refuses what it must, with a one-line InputError."""

import math

import numpy as np
import pytest
import torch

from advlab.errors import InputError
from advlab.validation import (
    NORMS,
    as_tensor,
    check_bounds,
    check_count,
    check_eps,
    check_images,
    check_labels,
    check_nonnegative,
    check_norm,
    check_positive,
)


@pytest.mark.parametrize("value", [2.5, True, "3", 0, -1, None, 3.0])
def test_check_count_refuses_non_integers(value):
    with pytest.raises(InputError, match="integer >= 1"):
        check_count("steps", value)


def test_check_count_accepts_integers():
    assert check_count("steps", 3) == 3 and check_count("n", np.int64(2)) == 2
    assert check_count("restarts", 0, minimum=0) == 0


@pytest.mark.parametrize("value", [0.0, -1.0, math.inf, math.nan, "1", True])
def test_check_positive(value):
    with pytest.raises(InputError):
        check_positive("c", value)


def test_check_positive_and_nonnegative_accept_numbers():
    assert check_positive("c", 2) == 2.0 and check_positive("c", torch.tensor(0.5)) == 0.5
    assert check_nonnegative("kappa", 0) == 0.0
    with pytest.raises(InputError, match=">= 0"):
        check_nonnegative("kappa", -1e-9)


@pytest.mark.parametrize("bounds", [(1, 0), (0, math.inf), (math.nan, 1), (0,), "ab", None])
def test_check_bounds(bounds):
    with pytest.raises(InputError, match="bounds"):
        check_bounds(bounds)


def test_check_eps_per_norm():
    assert check_eps(0.0, (0.0, 1.0)) == 0.0
    with pytest.raises(InputError, match="exceeds the width"):
        check_eps(1.5, (0.0, 1.0), norm="linf")
    assert check_eps(1.5, (0.0, 1.0), norm="l2") == 1.5  # an L2 ball may be wider than the box
    for bad in (-0.1, math.inf, math.nan, "0.1"):
        with pytest.raises(InputError, match="eps"):
            check_eps(bad, (0.0, 1.0), norm="l2")


def test_check_norm():
    assert NORMS == ("linf", "l2", "l1")
    assert check_norm("l1") == "l1"
    with pytest.raises(InputError, match="norm must be one of linf, l2"):
        check_norm("l1", ("linf", "l2"))
    with pytest.raises(InputError):
        check_norm(2)


def test_check_labels():
    assert check_labels("y", np.array([1, 2], dtype=np.int32), 2).dtype == torch.long
    for labels, message in [([0.5, 1.0], "integer"), ([True, False], "integer"), ([1, 2, 3], "shape"), ([1, 10], "0..9")]:
        with pytest.raises(InputError, match=message):
            check_labels("y", labels, 2, num_classes=10)


def test_check_images_and_as_tensor():
    x = np.full((2, 3), 0.5, dtype=np.float32)
    assert isinstance(check_images("x", x, (0.0, 1.0)), torch.Tensor)
    for bad, message in [(x[:0], "non-empty"), (x[0], "shape"), (x.astype(np.int64), "floating"),
                         (x * 3, "outside the declared bounds"), (np.full((2, 3), np.nan), "NaN")]:
        with pytest.raises(InputError, match=message):
            check_images("x", bad, (0.0, 1.0))
    with pytest.raises(InputError, match="tensor or array"):
        as_tensor("x", [[1.0], [2.0, 3.0]])
