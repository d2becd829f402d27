"""The golden outputs of the official evaluation protocol, shared by the robot and SIS tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def load_protocol(reference_dir: Path) -> dict[str, np.ndarray]:
    """Every array of ``golden/protocol.npz``."""
    with np.load(reference_dir / "golden" / "protocol.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def cases_of(protocol: dict[str, np.ndarray], prefix: str) -> list[str]:
    """Case ids (``robot_07`` …) present in the golden file."""
    ids = sorted({key.rsplit("_", 1)[0] for key in protocol if key.startswith(prefix)})
    assert ids, f"no {prefix} cases in protocol.npz"
    return ids
