"""Resize geometry, image normalisation and the zoom-in crop."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from fcanet_core import Click
from fcanet_core.inference.transforms import (Crop, network_size, resize_image, resize_prob, scale_clicks, to_rgb_uint8,
                                              zoom_crop)

# --- image normalisation ---------------------------------------------------------------------------

def test_rgb_uint8_passes_through_unchanged() -> None:
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb_uint8(image), image)


def test_grey_becomes_three_equal_channels() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = to_rgb_uint8(grey)
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], grey)


def test_rgba_drops_alpha() -> None:
    rgba = np.random.default_rng(1).integers(0, 256, (4, 5, 4), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb_uint8(rgba), rgba[:, :, :3])


def test_sixteen_bit_is_scaled_to_eight_bit() -> None:
    image = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    np.testing.assert_array_equal(to_rgb_uint8(image)[:, :, 0], [[0, 1, 255, 128]])


def test_bool_and_float_images() -> None:
    np.testing.assert_array_equal(to_rgb_uint8(np.array([[True, False]]))[0, :, 0], [255, 0])
    np.testing.assert_array_equal(to_rgb_uint8(np.array([[0.0, 0.5, 1.0]]))[0, :, 1], [0, 128, 255])


@pytest.mark.parametrize("image,message", [
    (np.zeros((4, 4, 2), np.uint8), "H×W×3"),
    (np.zeros((4, 4, 3, 1), np.uint8), "H×W×3"),
    (np.zeros(16, np.uint8), "H×W×3"),
    (np.zeros((0, 4, 3), np.uint8), "empty"),
    (np.full((2, 2), 300, np.int32), "0..255"),
    (np.full((2, 2), 1.5), r"\[0, 1\]"),
    (np.full((2, 2), np.nan), r"\[0, 1\]"),
    (np.zeros((2, 2), np.complex64), "dtype"),
])
def test_bad_images_are_rejected_with_a_reason(image: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_rgb_uint8(image)


# --- official resize geometry ------------------------------------------------------------------------

@pytest.mark.parametrize("size,expected", [
    ((115, 160), (512, 712)),   # int(160·512/115) = int(712.35)
    ((683, 512), (683, 512)),   # already short side 512
    ((100, 300), (512, 1536)),  # small images are upscaled
    ((1000, 777), (658, 512)),  # int(1000·512/777) = int(658.94): truncated, not rounded
])
def test_network_size_truncates_like_the_official_code(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert network_size(*size) == expected


def test_clicks_are_scaled_by_truncation() -> None:
    src, dst = (115, 160), (512, 712)
    clicks = [Click(80, 57, True), Click(159, 114, False), Click(0, 0, True)]
    scaled = scale_clicks(clicks, src, dst)
    assert [c.as_row() for c in scaled] == [
        (int(x * dst[1] / src[1]), int(y * dst[0] / src[0]), p) for x, y, p in (c.as_row() for c in clicks)
    ]
    assert all(0 <= c.x < dst[1] and 0 <= c.y < dst[0] for c in scaled)


def test_image_and_probability_resizes_are_cv2_bilinear() -> None:
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_image(image, (60, 85)),
                                  cv2.resize(image, (85, 60), interpolation=cv2.INTER_LINEAR))
    prob = rng.random((60, 85)).astype(np.float32)
    back = resize_prob(prob, (30, 40))
    assert back.shape == (30, 40) and back.dtype == np.float32
    np.testing.assert_array_equal(back, cv2.resize(prob, (40, 30), interpolation=cv2.INTER_LINEAR))


# --- zoom-in crop ------------------------------------------------------------------------------------

def test_zoom_crop_covers_clicks_and_mask_with_margin() -> None:
    mask = np.zeros((1000, 1500), np.uint8)
    mask[400:500, 600:800] = 1  # 100 × 200 object
    clicks = [Click(650, 450, True), Click(900, 480, False)]  # the negative click lies right of the mask
    crop = zoom_crop(clicks, mask, 1000, 1500, expansion=1.4, min_size=200)
    assert crop is not None
    # box rows 400..499 (100 px) → 1.4× = 140 → min 200; columns 600..900 (301 px) → 421.4
    assert crop.size == (200, 421)
    assert crop.y0 <= 400 and crop.y1 >= 500 and crop.x0 <= 600 and crop.x1 >= 901
    assert abs((crop.x0 + crop.x1) / 2 - 750.5) <= 1 and abs((crop.y0 + crop.y1) / 2 - 450) <= 1


def test_zoom_crop_is_clamped_to_the_image() -> None:
    crop = zoom_crop([Click(3, 2, True), Click(40, 30, True)], None, 600, 800, expansion=1.4, min_size=100)
    assert (crop.x0, crop.y0) == (0, 0)
    assert crop.x1 <= 800 and crop.y1 <= 600 and crop.size[0] >= 50 and crop.size[1] >= 50


def test_zoom_crop_covering_the_whole_image_means_no_zoom() -> None:
    assert zoom_crop([Click(50, 40, True)], None, 100, 120, min_size=200) is None


def test_crop_transform_and_inverse() -> None:
    rng = np.random.default_rng(3)
    crop = Crop(x0=10, y0=5, x1=40, y1=25, height=50, width=60)
    image = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    np.testing.assert_array_equal(crop.image(image), image[5:25, 10:40])
    assert crop.clicks([Click(12, 7, True), Click(39, 24, False)]) == [Click(2, 2, True), Click(29, 19, False)]
    prob = rng.random((50, 60)).astype(np.float32)
    pasted = crop.paste(crop.image(prob))
    assert pasted.shape == (50, 60) and pasted.dtype == np.float32
    np.testing.assert_array_equal(pasted[5:25, 10:40], prob[5:25, 10:40])
    outside = np.ones((50, 60), bool)
    outside[5:25, 10:40] = False
    assert not pasted[outside].any()
    with pytest.raises(ValueError, match="does not fit"):
        crop.paste(prob)
