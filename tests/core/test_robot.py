"""The robot user reproduces the official evaluation protocol exactly (golden outputs)."""
from __future__ import annotations

from pathlib import Path


from fcanet_core import next_click
from fcanet_core.clicks import clicks_from_rows
from tests.core.protocol import cases_of, load_protocol


def test_robot_next_click_matches_official(reference_dir: Path) -> None:
    protocol = load_protocol(reference_dir)
    cases = cases_of(protocol, "robot_")
    for case in cases:
        clicks = clicks_from_rows(protocol[f"{case}_clicks"])
        got = next_click(protocol[f"{case}_pred"], protocol[f"{case}_gt"], clicks)
        assert got.as_row() == tuple(int(v) for v in protocol[f"{case}_next"]), case
    # The golden set covers both click kinds and first clicks (no clicks made yet).
    assert {bool(protocol[f"{c}_next"][2]) for c in cases} == {True, False}
    assert any(len(protocol[f"{c}_clicks"]) == 0 for c in cases)
