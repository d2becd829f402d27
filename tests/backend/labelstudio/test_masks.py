"""Label Studio masks → 0/1 masks: brush RLE and polygons, their clicks, and refused regions."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from backend.labelstudio.masks import decode_regions
from tests.support.regions import brush_region, keypoint, load_horse


@pytest.fixture(scope="module")
def horse(shared_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return load_horse(shared_dir)


def test_captured_brush_rle_decodes_to_the_disc_at_the_original_size(capture) -> None:
    region = capture("webhook_annotation_created")["annotation"]["result"][0]
    [inst] = decode_regions([region], 240, 320)
    assert inst.mask.shape == (240, 320) and set(np.unique(inst.mask)) == {0, 1}
    ys, xs = np.nonzero(inst.mask)
    assert inst.mask[int(ys.mean()), int(xs.mean())] == 1
    assert inst.mask[0, 0] == inst.mask[-1, -1] == 0
    assert inst.label == "Object"


def test_real_mask_survives_the_brush_round_trip(horse) -> None:
    _, mask = horse
    [inst] = decode_regions([brush_region(mask)], *mask.shape)
    np.testing.assert_array_equal(inst.mask, mask)


def test_polygon_region_is_filled_in_pixels() -> None:
    region = {"id": "p", "type": "polygonlabels", "original_width": 200, "original_height": 100,
              "value": {"points": [[10, 10], [60, 10], [60, 90], [10, 90]], "polygonlabels": ["Object"]}}
    [inst] = decode_regions([region], 100, 200)
    ys, xs = np.nonzero(inst.mask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (20, 120, 10, 90)


def test_keypoints_of_the_same_label_become_the_instance_clicks(horse) -> None:
    _, mask = horse
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    inside = (int(xs[len(xs) // 2]), int(ys[len(ys) // 2]))
    outside = next((x, y) for y in range(height) for x in range(width) if not mask[y, x])
    regions = [keypoint(*outside, width, height, positive=False), keypoint(*inside, width, height, positive=None),
               keypoint(*inside, width, height, label="Other"), brush_region(mask)]
    [inst] = decode_regions(regions, height, width)
    assert [c.positive for c in inst.clicks] == [False, True]
    assert inst.clicks[1].x == pytest.approx(inside[0]) and inst.clicks[1].y == pytest.approx(inside[1])


def test_region_for_another_image_size_or_without_rle_is_refused(horse) -> None:
    _, mask = horse
    with pytest.raises(ValueError, match="image is"):
        decode_regions([brush_region(mask)], mask.shape[0] + 1, mask.shape[1])
    broken = brush_region(mask)
    broken["value"]["rle"] = None
    with pytest.raises(ValueError, match="no RLE"):
        decode_regions([broken], *mask.shape)


def test_an_rle_declaring_more_values_than_the_image_is_refused_before_decoding(horse) -> None:
    _, mask = horse
    region = brush_region(mask)
    rle = region["value"]["rle"]
    region["value"]["rle"] = list((100_000_000).to_bytes(4, "big")) + rle[4:]   # 100 M values, 400 MB
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="declares 100000000 values"):
            decode_regions([region], *mask.shape)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024
    region["value"]["rle"] = rle[:-40]
    with pytest.raises(ValueError, match="truncated RLE"):
        decode_regions([region], *mask.shape)
    region["value"]["rle"] = ["a", 1, 2, 3, 4]
    with pytest.raises(ValueError, match="byte values"):
        decode_regions([region], *mask.shape)


def test_empty_mask_is_skipped() -> None:
    assert decode_regions([brush_region(np.zeros((20, 30), np.uint8))], 20, 30) == []
