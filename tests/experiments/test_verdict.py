"""The verdict rule on a paper's claimed effect: symmetric in "no effect" and "the paper's effect"."""

import pytest

from advlab.experiments.verdict import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, claim_verdict, setup_differences, verdict_text

PAPER = 0.012 / 0.016 - 1  # Szegedy Sec. 4.2: -25%


def _changes(standard, adversarial):
    return [a / s - 1 for s, a in zip(standard, adversarial)]


def test_reproduced_needs_an_effect_and_the_papers_size_not_excluded():
    found = claim_verdict(_changes([0.02, 0.021, 0.019], [0.015, 0.0155, 0.0148]), PAPER)
    assert found.word == REPRODUCED and found.upper < 0 and found.lower <= PAPER


def test_not_reproduced_needs_the_papers_effect_excluded():
    found = claim_verdict(_changes([0.02, 0.021, 0.019], [0.0201, 0.0209, 0.0191]), PAPER)  # no change, tight
    assert found.word == NOT_REPRODUCED and found.lower > PAPER and not found.smaller


def test_a_real_but_smaller_effect_is_not_reproduced_and_says_so():
    found = claim_verdict(_changes([0.02, 0.021, 0.019], [0.019, 0.01995, 0.01805]), PAPER)  # -5%, tight
    assert found.word == NOT_REPRODUCED and found.smaller and found.upper < 0
    assert verdict_text(found, []) == "not reproduced, a smaller effect"


def test_inconclusive_when_neither_hypothesis_is_excluded_or_one_seed():
    assert claim_verdict(_changes([0.02, 0.021, 0.019], [0.015, 0.028, 0.016]), PAPER).word == INCONCLUSIVE
    assert claim_verdict([-0.3], PAPER).word == INCONCLUSIVE
    exact = claim_verdict([-0.5, -0.5], PAPER)
    assert exact.word == REPRODUCED and exact.p_value == 0.0 and exact.upper == pytest.approx(-0.5)


def test_the_rule_is_symmetric_under_swapping_the_two_hypotheses():
    """Mirror the changes about p / 2: 'no effect' and 'the paper's effect' trade places, and so do the verdicts."""
    for changes in ([-0.24, -0.26, -0.25], [-0.01, 0.0, 0.01]):
        mirrored = [PAPER - c for c in changes]
        a, b = claim_verdict(changes, PAPER), claim_verdict(mirrored, PAPER)
        assert {a.word, b.word} == {REPRODUCED, NOT_REPRODUCED}


def test_setup_differences_list_what_the_paper_states_and_the_run_does_otherwise():
    paper = {"training images": 60_000, "epochs": "to convergence", "pool": "every layer"}
    ours = {"training images": 6_309, "epochs": "to convergence"}
    assert setup_differences(ours, paper) == ["training images: 6309 (paper: 60000)", "pool: not done (paper: every layer)"]
    assert setup_differences(paper, paper) == []
    assert verdict_text(claim_verdict([-0.3, -0.3], PAPER), ["x"]) == "reproduced; setup differs"
