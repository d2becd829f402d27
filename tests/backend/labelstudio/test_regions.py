"""Label Studio region fields read directly: value, label, polarity, keypoint → click, rectangle → box."""
from __future__ import annotations

import pytest

from backend.labelstudio.regions import (Box, PromptError, is_positive, keypoint_click, original_size, rectangle_box,
                                         region_label, region_value)
from fcanet_core import Click


def region(kind: str, value: dict, **extra) -> dict:
    return {"id": "r", "type": kind, "to_name": "image", "original_width": 320, "original_height": 240,
            "value": value, **extra}


def test_value_and_label_of_a_region():
    brush = region("brushlabels", {"brushlabels": ["Horse"]})
    assert region_value(brush) == {"brushlabels": ["Horse"]} and region_label(brush) == "Horse"
    assert region_label(region("keypointlabels", {"labels": ["Cat"]})) == "Cat"
    assert region_label(region("keypointlabels", {})) is None and region_value({"id": "r"}) == {}
    with pytest.raises(PromptError, match="value must be an object"):
        region_label(region("keypointlabels", ["x"]))


def test_keypoint_becomes_a_clamped_click_with_its_polarity():
    kp = region("keypointlabels", {"x": 50.0, "y": 100.0}, is_positive=False)
    assert original_size(kp) == (320, 240)
    assert keypoint_click(kp, 320, 240) == Click(160.0, 239.0, False)
    assert is_positive(region("keypointlabels", {"positive": "no"})) is False
    assert is_positive(region("keypointlabels", {})) is True
    with pytest.raises(PromptError, match="outside"):
        keypoint_click(region("keypointlabels", {"x": -1, "y": 5}), 320, 240)


def test_rectangle_becomes_a_pixel_box_inside_the_image():
    rect = region("rectanglelabels", {"x": 90.0, "y": 10.0, "width": 20.0, "height": 50.0})
    assert rectangle_box(rect, 320, 240) == Box(288.0, 24.0, 320.0, 144.0)
    with pytest.raises(PromptError, match="no area"):
        rectangle_box(region("rectanglelabels", {"x": 1, "y": 1, "width": 0, "height": 5}), 320, 240)
