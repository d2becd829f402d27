"""The robot user and SIS reproduce the official evaluation protocol exactly (golden outputs)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fcanet_core import Click, apply_sis, next_click
from fcanet_core.clicks import clicks_from_rows


@pytest.fixture(scope="module")
def protocol(reference_dir: Path) -> dict[str, np.ndarray]:
    with np.load(reference_dir / "golden" / "protocol.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _cases(protocol: dict[str, np.ndarray], prefix: str) -> list[str]:
    """Case ids (``robot_07`` …) present in the golden file."""
    ids = sorted({key.rsplit("_", 1)[0] for key in protocol if key.startswith(prefix)})
    assert ids, f"no {prefix} cases in protocol.npz"
    return ids


def test_robot_next_click_matches_official(protocol: dict[str, np.ndarray]) -> None:
    cases = _cases(protocol, "robot_")
    for case in cases:
        clicks = clicks_from_rows(protocol[f"{case}_clicks"])
        got = next_click(protocol[f"{case}_pred"], protocol[f"{case}_gt"], clicks)
        assert got.as_row() == tuple(int(v) for v in protocol[f"{case}_next"]), case
    # The golden set covers both click kinds and first clicks (no clicks made yet).
    assert {bool(protocol[f"{c}_next"][2]) for c in cases} == {True, False}
    assert any(len(protocol[f"{c}_clicks"]) == 0 for c in cases)


def test_sis_matches_official(protocol: dict[str, np.ndarray]) -> None:
    cases = _cases(protocol, "sis_")
    for case in cases:
        clicks = [Click(int(x), int(y), True) for x, y in protocol[f"{case}_pos"]]
        got = apply_sis(protocol[f"{case}_pred"], clicks)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, protocol[f"{case}_out"], err_msg=case)
    # Cases where SIS removes something, so equality is not just the identity.
    assert any((protocol[f"{c}_out"] != protocol[f"{c}_pred"]).any() for c in cases)
