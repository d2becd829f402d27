"""Frames sent as bytes: decoded within the limits and once per content; prompts fitted to the frame."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from backend.config import Settings
from backend.images.fetch import ImageTooLarge
from backend.images.frames import FrameDecoder, frame_digest, place_prompt
from backend.labelstudio.regions import Box, PromptError
from fcanet_core import Click


def _png(height: int, width: int) -> bytes:
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (255, 0, 0)  # BGR blue on the left
    return cv2.imencode(".png", image)[1].tobytes()


def test_frames_decode_to_rgb_once_per_content() -> None:
    decoder = FrameDecoder(Settings())
    data = _png(20, 30)
    image, digest = decoder.decode(data)
    assert image.shape == (20, 30, 3) and tuple(image[0, 0]) == (0, 0, 255) and digest == frame_digest(data)
    again, _ = decoder.decode(data)
    assert again is image and len(decoder.cache) == 1
    assert frame_digest(_png(20, 31)) != digest


def test_limits_apply_before_decoding() -> None:
    data = _png(40, 40)
    with pytest.raises(ImageTooLarge, match="MAX_IMAGE_BYTES"):
        FrameDecoder(dataclasses.replace(Settings(), max_image_bytes=len(data) - 1)).decode(data)
    with pytest.raises(ImageTooLarge):
        FrameDecoder(dataclasses.replace(Settings(), max_image_pixels=1000)).decode(data)


def test_clicks_on_the_far_edges_move_onto_the_last_pixel_and_outside_ones_are_refused() -> None:
    clicks, box = place_prompt([Click(10.0, 5.0, True), Click(0.0, 0.0, False)], None, 10, 5)
    assert clicks == [Click(9.0, 4.0, True), Click(0.0, 0.0, False)] and box is None
    with pytest.raises(PromptError, match=r"click \(10.5, 1\) lies outside the 10x5 image"):
        place_prompt([Click(10.5, 1.0, True)], None, 10, 5)
    with pytest.raises(PromptError, match="the first click must be positive"):
        place_prompt([Click(1.0, 1.0, False)], None, 10, 5)


def test_a_box_is_clipped_and_prompts_by_its_centre_without_a_positive_click() -> None:
    clicks, box = place_prompt([], Box(-5.0, 2.0, 8.0, 50.0), 10, 20)
    assert box == Box(0.0, 2.0, 8.0, 20.0) and clicks == [Click(4.0, 11.0, True)]
    with pytest.raises(PromptError, match="no area inside"):
        place_prompt([], Box(12.0, 0.0, 15.0, 5.0), 10, 20)
