"""The promotion rule: a paired comparison of candidate and current version, example by example.

Each example's score is the mean IoU over the robot user's first ``k`` clicks (a smooth measure:
a capped integer NoC hides most of what a model gains or loses). The candidate's gain is the
mean of the paired differences candidate − current; a paired bootstrap over the examples (fixed
seed) bounds it at the rule's confidence:

* lower bound > 0 with at least ``min_confident`` examples: **better** → promote;
* upper bound < 0 with at least ``min_confident`` examples: **worse** → reject;
* otherwise the evidence is too thin to call (**inconclusive**): promote only if the mean gain is
  not below ``-margin``.

Whatever the project says, a candidate whose mean score on the guard set (instances of the
bundled model's own training domain) is more than ``guard_margin`` below the bundled model's is
rejected: it forgets. Everything here is pure (numbers in, decision out).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Sequence

import numpy as np

from ..common.gate_rule import GateRule


class Verdict(StrEnum):
    """What the paired comparison on the project's held-out examples says."""

    BETTER = "better"
    WORSE = "worse"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Comparison:
    """Paired scores of two models on the same examples and the bootstrap bounds of the mean gain."""

    n: int
    current: float
    candidate: float
    gain: float
    low: float
    high: float

    def to_dict(self) -> dict:
        """JSON-ready, rounded to 4 decimals."""
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Decision:
    """The rule's answer: promote or not, the verdict on the project, and why in one sentence."""

    promote: bool
    verdict: Verdict
    why: str


def example_score(ious: Sequence[float], clicks: int) -> float:
    """Mean IoU over the first ``clicks`` clicks of one example (all of them if it has fewer)."""
    if not ious:
        raise ValueError("an example needs at least one IoU")
    return float(np.mean(ious[:clicks]))


def bootstrap_bounds(gains: Sequence[float], confidence: float, resamples: int, seed: int) -> tuple[float, float]:
    """One-sided lower and upper bounds of the mean of ``gains`` at ``confidence`` (percentile
    paired bootstrap over the examples, ``numpy`` generator seeded with ``seed``)."""
    values = np.asarray(gains, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no paired examples to compare")
    draws = np.random.default_rng(seed).integers(0, values.size, size=(resamples, values.size))
    means = values[draws].mean(axis=1)
    return float(np.quantile(means, 1.0 - confidence)), float(np.quantile(means, confidence))


def compare(current: Sequence[float], candidate: Sequence[float], rule: GateRule) -> Comparison:
    """Pair the two models' per-example scores (same examples, same order) and bound the mean gain."""
    if len(current) != len(candidate):
        raise ValueError(f"unpaired scores: {len(current)} current vs {len(candidate)} candidate")
    gains = np.asarray(candidate, dtype=np.float64) - np.asarray(current, dtype=np.float64)
    low, high = bootstrap_bounds(gains, rule.confidence, rule.resamples, rule.seed)
    return Comparison(n=len(gains), current=float(np.mean(current)), candidate=float(np.mean(candidate)),
                      gain=float(gains.mean()), low=low, high=high)


def verdict(project: Comparison, rule: GateRule) -> Verdict:
    """Better, worse or inconclusive on the project's held-out examples (see the module docstring)."""
    if project.n >= rule.min_confident and project.low > 0:
        return Verdict.BETTER
    if project.n >= rule.min_confident and project.high < 0:
        return Verdict.WORSE
    return Verdict.INCONCLUSIVE


def decide(project: Comparison, guard: Comparison | None, rule: GateRule) -> Decision:
    """The promotion decision from the project comparison and the guard comparison (``None``: no guard)."""
    found = verdict(project, rule)
    level = f"{rule.confidence:.0%}"
    score = f"mean IoU over {rule.clicks} clicks"
    stated = (f"{score} {project.candidate:.3f} vs {project.current:.3f} on {project.n} held-out example(s), "
              f"gain {project.gain:+.3f} ({level} bounds {project.low:+.3f} … {project.high:+.3f})")
    if guard is not None and guard.gain < -rule.guard_margin:
        return Decision(False, found, f"forgets: guard set {score} {guard.candidate:.3f} vs {guard.current:.3f} "
                                      f"({guard.gain:+.3f}, more than {rule.guard_margin} lost); project: {stated}")
    if found is Verdict.BETTER:
        return Decision(True, found, f"better with {level} confidence: {stated}")
    if found is Verdict.WORSE:
        return Decision(False, found, f"worse with {level} confidence: {stated}")
    if project.gain < -rule.margin:
        return Decision(False, found, f"inconclusive and more than {rule.margin} worse: {stated}")
    return Decision(True, found, f"inconclusive but not worse by more than {rule.margin}: {stated}")
