"""The robot user reproduces the official evaluation protocol exactly (golden outputs)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import distance_transform_edt

from fcanet_core import next_click
from fcanet_core.clicks import Click, clicks_from_rows
from tests.support.protocol import cases_of, load_protocol


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


def _next_click_over_the_whole_image(pred: np.ndarray, gt: np.ndarray, clicks: list[Click]) -> Click:
    """The protocol written plainly: each distance transform over the whole 1-pixel-padded image."""
    dists = []
    for error in ((gt == 1) & (pred == 0), (gt == 0) & (pred > 0)):
        dist = distance_transform_edt(np.pad(error, 1))[1:-1, 1:-1]
        for c in clicks:
            dist[c.y, c.x] = 0
        dists.append(dist)
    positive = dists[0].max() > dists[1].max()
    y, x = np.unravel_index(int(np.argmax(dists[0] if positive else dists[1])), gt.shape)
    return Click(int(x), int(y), bool(positive))


def test_next_click_equals_the_whole_image_transform_on_random_masks() -> None:
    rng = np.random.default_rng(0)
    for trial in range(300):
        h, w = (int(v) for v in rng.integers(4, 120, 2))
        gt = (cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 3) > 0.5).astype(np.uint8)
        gt[rng.random((h, w)) < 0.05] = 255  # ignore pixels
        pred = np.zeros((h, w), np.uint8)
        if trial % 4:  # a prediction that is a shifted, partly wrong copy (small or border-touching errors)
            pred = np.roll(gt == 1, int(rng.integers(-3, 4)), axis=int(rng.integers(2))).astype(np.uint8)
        clicks = [Click(int(rng.integers(w)), int(rng.integers(h)), bool(rng.integers(2))) for _ in range(trial % 3)]
        assert next_click(pred, gt, clicks) == _next_click_over_the_whole_image(pred, gt, clicks), trial
