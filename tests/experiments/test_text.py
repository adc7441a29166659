"""The report number formats: a rate never reads 0% or 100% unless it is exactly that."""

import math

import pytest

from advlab.experiments.text import number, percent


@pytest.mark.parametrize(("value", "text"), [
    (0.0191364, "1.9%"), (1.0, "100.0%"), (0.0, "0.0%"), (0.9995093, "99.95%"), (0.0004907, "0.05%"),
    (0.99999, "99.999%"), (1e-9, "0.000000%"), (None, "—"), (math.nan, "—"),
])
def test_percent_keeps_one_decimal_unless_rounding_would_claim_all_or_none(value, text):
    assert percent(value) == text


def test_percent_and_number_take_their_digits():
    assert percent(0.12345, digits=2) == "12.35%" and number(0.12345) == "0.123" and number(None) == "—"
