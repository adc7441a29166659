"""parse_eps: fractions in lists and ranges, computed exactly and rounded once to float."""

from __future__ import annotations

import pytest

from advlab.analysis.robustness import parse_eps, parse_number
from advlab.errors import InputError


def test_a_fraction_is_the_float_of_the_division():
    assert parse_number("8/255") == 8 / 255
    assert parse_number(" 1e-2 ") == 0.01 and parse_number("0.3") == 0.3


def test_lists_and_ranges_take_fractions():
    assert parse_eps("2/255,8/255") == [2 / 255, 8 / 255]
    assert parse_eps("0:8/255:1/255") == [k / 255 for k in range(9)]
    assert parse_eps("1/255:0.02:1/255") == [k / 255 for k in range(1, 6)]  # 5/255 = 0.0196 <= 0.02 < 6/255


def test_decimal_grids_hit_their_decimals_exactly():
    assert parse_eps("0:0.3:0.05") == [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
    assert parse_eps("0.3,0.1,0.1") == [0.1, 0.3]


@pytest.mark.parametrize("text", ["8/0", "8/x", "0:1:0", "0:1/0:1", "1:0:1", "a,b", "1/2/3", ","])
def test_bad_eps_is_refused(text):
    with pytest.raises(InputError):
        parse_eps(text)
