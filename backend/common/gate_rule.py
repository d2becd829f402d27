"""The promotion rule's numbers and their bounds, in one place.

Kept free of torch and numpy so that :class:`backend.config.LearningConfig` can check the
``GATE_*`` / ``GUARD_MARGIN`` settings when they are read, with the same bounds the rule
(:mod:`backend.learning.evidence`) is built with.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GateRule:
    """The rule's numbers (``GATE_*`` / ``GUARD_MARGIN`` settings); out-of-range values raise ``ValueError``."""

    #: Robot clicks whose IoUs are averaged into an example's score (GATE_CLICKS).
    clicks: int = 5
    #: One-sided confidence of the bootstrap bounds (GATE_CONFIDENCE).
    confidence: float = 0.95
    #: Largest mean loss of score tolerated when the evidence is inconclusive (GATE_MARGIN).
    margin: float = 0.01
    #: Largest mean loss of score tolerated on the guard set, whatever the project's gain (GUARD_MARGIN).
    guard_margin: float = 0.02
    #: Fewer paired examples than this never make a confident call.
    min_confident: int = 5
    resamples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.clicks < 1:
            raise ValueError(f"GATE_CLICKS must be positive, got {self.clicks}")
        if not 0.5 < self.confidence < 1.0:
            raise ValueError(f"GATE_CONFIDENCE must lie in (0.5, 1), got {self.confidence}")
        if self.margin < 0:
            raise ValueError(f"GATE_MARGIN must not be negative, got {self.margin}")
        if self.guard_margin < 0:
            raise ValueError(f"GUARD_MARGIN must not be negative, got {self.guard_margin}")
        if self.resamples < 1 or self.min_confident < 2:
            raise ValueError(f"resamples must be positive and min_confident at least 2, got "
                             f"{self.resamples}, {self.min_confident}")
