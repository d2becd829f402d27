"""The promotion rule on real numbers: paired bootstrap bounds, verdicts, margins and the guard veto."""
from __future__ import annotations

import numpy as np
import pytest

from backend.common.gate_rule import GateRule
from backend.learning.evidence import (Comparison, Verdict, bootstrap_bounds, compare, decide, example_score,
                                       verdict)

RULE = GateRule()
#: Per-example mean IoU over 5 clicks of two models on the same 8 examples.
CURRENT = [0.81, 0.74, 0.90, 0.62, 0.88, 0.79, 0.70, 0.85]
TUNED = [0.86, 0.80, 0.91, 0.71, 0.90, 0.84, 0.78, 0.87]


def test_example_score_averages_the_first_clicks() -> None:
    assert example_score([0.5, 0.7, 0.9, 1.0], 3) == pytest.approx(0.7)
    assert example_score([0.6], 5) == pytest.approx(0.6)
    with pytest.raises(ValueError):
        example_score([], 5)


def test_bootstrap_bounds_are_seeded_and_bracket_the_mean() -> None:
    gains = np.subtract(TUNED, CURRENT)
    low, high = bootstrap_bounds(gains, 0.95, 2000, seed=0)
    assert (low, high) == bootstrap_bounds(gains, 0.95, 2000, seed=0)
    assert 0 < low < gains.mean() < high < gains.max()
    assert bootstrap_bounds([0.2, 0.2, 0.2], 0.95, 500, seed=3) == pytest.approx((0.2, 0.2))


def test_a_consistent_gain_is_better_with_confidence_and_promoted() -> None:
    project = compare(CURRENT, TUNED, RULE)
    assert project.n == 8 and project.gain == pytest.approx(0.0475)
    assert verdict(project, RULE) is Verdict.BETTER
    decision = decide(project, None, RULE)
    assert decision.promote and decision.why.startswith("better with 95% confidence")


def test_a_consistent_loss_is_worse_with_confidence_and_rejected() -> None:
    decision = decide(compare(TUNED, CURRENT, RULE), None, RULE)
    assert decision.verdict is Verdict.WORSE and not decision.promote


def test_the_reported_case_is_promoted_although_one_example_took_one_more_click() -> None:
    """Shaped like the reported case: five held-out examples, a large mean gain, one slightly worse."""
    current, candidate = [0.71, 0.83, 0.80, 0.78, 0.86], [0.88, 0.91, 0.79, 0.90, 0.93]
    decision = decide(compare(current, candidate, RULE), None, RULE)
    assert decision.verdict is Verdict.BETTER and decision.promote


def test_thin_evidence_promotes_within_the_margin_only() -> None:
    slightly_worse = compare([0.80, 0.70], [0.795, 0.70], RULE)  # two examples: never a confident call
    assert verdict(slightly_worse, RULE) is Verdict.INCONCLUSIVE
    assert decide(slightly_worse, None, RULE).promote
    clearly_worse = compare([0.80, 0.70], [0.70, 0.60], RULE)
    decision = decide(clearly_worse, None, RULE)
    assert decision.verdict is Verdict.INCONCLUSIVE and not decision.promote
    assert "more than 0.01 worse" in decision.why
    mixed = compare(CURRENT, [c + (0.05 if i % 2 else -0.05) for i, c in enumerate(CURRENT)], RULE)
    assert verdict(mixed, RULE) is Verdict.INCONCLUSIVE and decide(mixed, None, RULE).promote


def test_a_candidate_that_forgets_is_rejected_whatever_the_project_gain() -> None:
    project = compare(CURRENT, TUNED, RULE)
    guard = compare([0.82, 0.77, 0.91, 0.68], [0.79, 0.70, 0.88, 0.66], RULE)  # −0.04 on the guard set
    decision = decide(project, guard, RULE)
    assert not decision.promote and decision.verdict is Verdict.BETTER
    assert decision.why.startswith("forgets")
    kept = compare([0.82, 0.77, 0.91, 0.68], [0.81, 0.76, 0.91, 0.68], RULE)  # −0.005: within the margin
    assert decide(project, kept, RULE).promote


def test_unpaired_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="unpaired"):
        compare([0.5, 0.6], [0.5], RULE)
    assert Comparison(2, 0.5, 0.6, 0.1, 0.05, 0.15).to_dict()["gain"] == 0.1
