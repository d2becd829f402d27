"""Structural integrity strategy (SIS): keep only the object parts a positive click touches."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..clicks import Click
from ..masks import four_connected_components


def apply_sis(mask: np.ndarray, clicks: Sequence[Click]) -> np.ndarray:
    """Keep the 4-connected foreground components of ``mask`` that contain a positive click.

    Args:
        mask: H×W array, foreground where non-zero.
        clicks: clicks in the mask's pixel coordinates; negative clicks are ignored.

    Returns:
        uint8 H×W 0/1 mask; empty when no positive click lies on the foreground.
    """
    components = four_connected_components(np.asarray(mask) > 0)
    h, w = components.shape
    kept = np.zeros(int(components.max()) + 1, dtype=np.uint8)     # 1 for the components a positive click lies on
    for c in clicks:
        if c.positive and 0 <= int(c.y) < h and 0 <= int(c.x) < w:
            kept[components[int(c.y), int(c.x)]] = 1
    kept[0] = 0                                 # the background
    return kept[components]
