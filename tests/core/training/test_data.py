"""Training views: a crop that holds an object pixel, padding of small images, flips, and the batch layout."""
from __future__ import annotations

import numpy as np
import pytest

from fcanet_core.clicks import Click
from fcanet_core.evaluation.robot import IGNORE
from fcanet_core.training.data import CropSpec, Example, View, collate, random_view, render_view


def _scene(height: int = 60, width: int = 90) -> tuple[np.ndarray, np.ndarray]:
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    gt = np.zeros((height, width), np.uint8)
    gt[40:50, 70:80] = 1  # a small object off-centre
    return image, gt


def test_every_random_view_holds_object_pixels() -> None:
    image, gt = _scene()
    spec = CropSpec(crop=32, short_side=60, scale_range=(0.8, 1.2), flip=True)
    rng = np.random.default_rng(3)
    views = [random_view(gt, spec, rng) for _ in range(40)]
    for view in views:
        crop_image, crop_gt = render_view(image, gt, view, spec.crop)
        assert crop_image.shape == (32, 32, 3) and crop_gt.shape == (32, 32)
        assert (crop_gt == 1).any()
        assert 0.8 - 1e-9 <= view.scale <= 1.2 + 1e-9
    assert {v.flip for v in views} == {True, False}


def test_a_small_image_is_padded_with_ignore_and_black() -> None:
    image, gt = _scene(20, 24)
    gt[:] = 1
    crop_image, crop_gt = render_view(image, gt, View(1.0, 0, 0, False), 32)
    assert (crop_gt[:20, :24] == 1).all() and (crop_gt[20:] == IGNORE).all() and (crop_gt[:, 24:] == IGNORE).all()
    assert (crop_image[20:] == 0).all() and np.array_equal(crop_image[:20, :24], image)


def test_a_flipped_view_is_the_mirror_image() -> None:
    image, gt = _scene()
    straight = render_view(image, gt, View(1.0, 10, 20, False), 32)
    mirrored = render_view(image, gt, View(1.0, 10, 20, True), 32)
    assert all(np.array_equal(a[:, ::-1], b) for a, b in zip(straight, mirrored))


def test_a_mask_without_object_is_refused() -> None:
    with pytest.raises(ValueError, match="no object pixel"):
        random_view(np.zeros((40, 40), np.uint8), CropSpec(crop=32), np.random.default_rng(0))


def test_collate_stacks_the_network_inputs() -> None:
    image, gt = _scene()
    crop_image, crop_gt = render_view(image, gt, View(1.0, 20, 50, False), 32)
    clicks = [Click(15.0, 15.0, True), Click(2.0, 2.0, False)]
    example = Example(0, crop_image, crop_gt, clicks, View(1.0, 20, 50, False))
    batch = collate([example, example])
    assert batch["image"].shape == (2, 3, 32, 32) and batch["image"].dtype == np.float32
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    maps = {k: v.shape for k, v in batch.items() if k != "image"}
    assert maps == {k: (2, 1, 32, 32) for k in ("gt", "pos", "neg", "first")}
    assert batch["pos"][0, 0, 15, 15] == 0.0 and batch["neg"][0, 0, 2, 2] == 0.0
