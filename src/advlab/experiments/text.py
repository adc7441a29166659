"""Numbers in words, for the sentences the experiments compute (and the reports' tables):
"—" for a missing or NaN value."""

from __future__ import annotations

import math


def percent(value: float | None, digits: int = 1) -> str:
    """100 * value with `digits` decimals, more where rounding would show 0% or 100% for a value that is
    neither (1 of 2,038 images survives: 99.95%, not 100.0%)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    while digits < 6 and 0 < value < 1 and f"{100 * value:.{digits}f}" in (f"{0:.{digits}f}", f"{100:.{digits}f}"):
        digits += 1
    return f"{100 * value:.{digits}f}%"


def number(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"
