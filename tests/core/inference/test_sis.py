"""SIS reproduces the official evaluation protocol exactly (golden outputs)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fcanet_core import Click, apply_sis
from tests.support.protocol import cases_of, load_protocol


def test_sis_matches_official(reference_dir: Path) -> None:
    protocol = load_protocol(reference_dir)
    cases = cases_of(protocol, "sis_")
    for case in cases:
        clicks = [Click(int(x), int(y), True) for x, y in protocol[f"{case}_pos"]]
        got = apply_sis(protocol[f"{case}_pred"], clicks)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, protocol[f"{case}_out"], err_msg=case)
    # Cases where SIS removes something, so equality is not just the identity.
    assert any((protocol[f"{c}_out"] != protocol[f"{c}_pred"]).any() for c in cases)
