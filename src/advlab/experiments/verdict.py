"""One verdict rule for a paper's claimed effect, and the setup differences that qualify it.

A claim is a relative change the paper reports (for example -25%: the error falls by a quarter).
From paired per-seed relative changes, L and U are the one-sided 95% lower and upper confidence
bounds of their mean (Student t, n - 1 degrees of freedom). The two hypotheses, "no effect" (0)
and "the paper's effect" (p < 0), are treated alike: a verdict is conclusive only when the data
exclude the other one.

- reproduced: U < 0 and L <= p (an effect in the paper's direction, and one as large as the
  paper's is not excluded);
- not reproduced: L > p (an effect as large as the paper's is excluded; `smaller` when U < 0 too,
  that is a real but smaller effect);
- inconclusive: neither is excluded, or fewer than 2 seeds.

"setup differs" is added wherever the run's setup is not the paper's, with the differences
listed (computed by `setup_differences` from the two setups as data).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


@dataclass(frozen=True)
class Verdict:
    word: str  # REPRODUCED, NOT_REPRODUCED or INCONCLUSIVE
    mean: float  # mean relative change
    lower: float | None  # one-sided 95% lower bound of the mean
    upper: float | None  # one-sided 95% upper bound
    p_value: float | None  # one-sided paired t-test of "the change is < 0"
    smaller: bool = False  # not reproduced, yet a real effect in the paper's direction (U < 0)


def claim_verdict(relative_changes: list[float], paper_relative: float) -> Verdict:
    """The verdict on a claimed relative change `paper_relative` (< 0) from paired per-seed changes."""
    n = len(relative_changes)
    if n < 2:
        return Verdict(INCONCLUSIVE, statistics.fmean(relative_changes) if n else math.nan, None, None, None)
    from scipy import stats  # here, not at the top: it takes ~0.4 s, and every CLI start imports this module

    center, spread = statistics.fmean(relative_changes), statistics.stdev(relative_changes) / math.sqrt(n)
    t = float(stats.t.ppf(0.95, n - 1))
    p = (0.0 if center < 0 else 1.0) if spread == 0 else float(stats.t.cdf(center / spread, n - 1))
    lower, upper = center - t * spread, center + t * spread
    if lower > paper_relative:
        return Verdict(NOT_REPRODUCED, center, lower, upper, p, smaller=upper < 0)
    word = REPRODUCED if upper < 0 else INCONCLUSIVE
    return Verdict(word, center, lower, upper, p)


def setup_differences(ours: Mapping[str, Any], papers: Mapping[str, Any]) -> list[str]:
    """'what: ours (paper: theirs)' for every setting the paper states and this run does otherwise."""
    return [f"{key}: {ours.get(key, 'not done')} (paper: {value})" for key, value in papers.items() if ours.get(key) != value]


def verdict_text(verdict: Verdict, differences: list[str]) -> str:
    """The verdict in words, 'setup differs' appended where it does."""
    word = verdict.word + (", a smaller effect" if verdict.smaller else "")
    return word + ("; setup differs" if differences else "")
