"""The promotion rule's bounds: each out-of-range number is refused with its setting's name."""
from __future__ import annotations

import pytest

from backend.common.gate_rule import GateRule


@pytest.mark.parametrize("numbers, setting", [
    ({"clicks": 0}, "GATE_CLICKS"),
    ({"confidence": 1.0}, "GATE_CONFIDENCE"),
    ({"confidence": 0.5}, "GATE_CONFIDENCE"),
    ({"margin": -0.1}, "GATE_MARGIN"),
    ({"guard_margin": -0.01}, "GUARD_MARGIN"),
    ({"min_confident": 1}, "min_confident"),
    ({"resamples": 0}, "resamples"),
])
def test_out_of_range_numbers_are_refused_by_name(numbers: dict, setting: str) -> None:
    with pytest.raises(ValueError, match=setting):
        GateRule(**numbers)


def test_the_defaults_and_the_edges_of_the_bounds_are_accepted() -> None:
    assert GateRule() == GateRule(clicks=5, confidence=0.95, margin=0.01, guard_margin=0.02)
    assert GateRule(clicks=1, confidence=0.51, margin=0.0, guard_margin=0.0, min_confident=2).margin == 0.0
