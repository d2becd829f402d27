"""The OpenCV mask geometry equals scipy.ndimage's, and the robot user clicks where scipy's transform says."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt, label

from fcanet_core.clicks import Click
from fcanet_core.data.datasets import load_samples
from fcanet_core.evaluation.robot import IGNORE, next_click
from fcanet_core.masks import distance_to_background, four_connected_components


@pytest.fixture(scope="module")
def grabcut_gts(shared_dir: Path) -> list[np.ndarray]:
    """The 50 GrabCut ground truths (0 background, 1 object, 255 ignore)."""
    gts = [sample.gt for sample in load_samples(shared_dir / "data" / "grabcut")]
    assert len(gts) == 50
    return gts


def _scipy_robot_click(pred: np.ndarray, gt: np.ndarray) -> Click:
    """The robot user's click computed with scipy's transform over the whole 1-pixel-padded image."""
    fn, fp = ((gt == 1) & (pred == 0), (gt == 0) & (pred > 0))
    fn_dist, fp_dist = (distance_transform_edt(np.pad(e, 1))[1:-1, 1:-1] for e in (fn, fp))
    positive = fn_dist.max() > fp_dist.max()
    y, x = np.unravel_index(int(np.argmax(fn_dist if positive else fp_dist)), gt.shape)
    return Click(int(x), int(y), bool(positive))


def test_distance_to_background_equals_scipy_on_grabcut_masks(grabcut_gts: list[np.ndarray]) -> None:
    for gt in grabcut_gts:
        obj = gt == 1
        for mask in (np.pad(obj, 1), ~obj, np.pad(gt == IGNORE, 1)):
            got = distance_to_background(mask)
            assert got.dtype == np.float64 and got.shape == mask.shape
            np.testing.assert_allclose(got, distance_transform_edt(mask), rtol=1e-6, atol=1e-6)


def test_robot_clicks_equal_scipys_on_all_grabcut_masks(grabcut_gts: list[np.ndarray]) -> None:
    assert sum(bool((gt == IGNORE).any()) for gt in grabcut_gts) > 0    # ignore regions are among them
    negatives = 0
    for gt in grabcut_gts:
        empty = np.zeros(gt.shape, dtype=np.uint8)
        assert next_click(empty, gt) == _scipy_robot_click(empty, gt)      # the first click
        grown = cv2.dilate((gt == 1).astype(np.uint8), np.ones((15, 15), np.uint8))  # a false-positive rim
        click = next_click(grown, gt)
        assert click == _scipy_robot_click(grown, gt)
        negatives += not click.positive
    assert negatives > 0


def test_four_connected_components_equal_scipys_default_labels(grabcut_gts: list[np.ndarray]) -> None:
    for gt in grabcut_gts:
        for mask in (gt == 1, gt == 0, gt == IGNORE):
            expected, count = label(mask)                 # default structure: 4-connectivity
            got = four_connected_components(mask)
            np.testing.assert_array_equal(got, expected)
            assert got.max() == count


def test_diagonal_neighbours_are_separate_components() -> None:
    mask = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1]], dtype=np.uint8)
    np.testing.assert_array_equal(four_connected_components(mask), [[1, 0, 0], [0, 2, 2], [0, 0, 2]])


def test_distance_to_background_counts_no_pixel_outside_the_image() -> None:
    mask = np.ones((1, 5), dtype=bool)
    mask[0, 0] = False
    np.testing.assert_allclose(distance_to_background(mask), [[0, 1, 2, 3, 4]])
