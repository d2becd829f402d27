"""Label Studio regions → clicks/box/label, and masks → brush or polygon results."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle

from backend.bench.annotator import brush_mask
from backend.labelstudio.prompts import LabelConfig, OutputSpec, Prompt, mask_to_results, parse_prompt
from backend.labelstudio.regions import Box, PromptError
from fcanet_core import Click
from fcanet_core.evaluation.robot import iou

W, H = 320, 240


def keypoint(x: float, y: float, label: str = "Object", to_name: str = "image", **extra) -> dict:
    region = {"id": f"kp{x}-{y}", "from_name": "tag2", "to_name": to_name, "type": "keypointlabels",
              "original_width": W, "original_height": H, "image_rotation": 0,
              "value": {"x": x, "y": y, "width": 0.6, "keypointlabels": [label]}}
    region.update(extra)
    return region


def rectangle(x: float, y: float, w: float, h: float, rotation: float = 0.0, label: str = "Object") -> dict:
    return {"id": f"rect{x}", "from_name": "tag3", "to_name": "image", "type": "rectanglelabels",
            "original_width": W, "original_height": H, "image_rotation": 0,
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, "rectanglelabels": [label]}}


def ctx(*regions: dict) -> dict:
    return {"result": list(regions)}


# ----------------------------------------------------------------------------- clicks
def test_percent_to_pixels_and_size_from_the_region():
    prompt = parse_prompt(ctx(keypoint(50.0, 25.0)))
    assert prompt == Prompt((Click(160.0, 60.0, True),), None, "Object", "image", W, H)


def test_captured_positive_and_alt_click_negative(capture):
    context = capture("predict_interactive_pos_neg_localfiles")["params"]["context"]
    prompt = parse_prompt(context)
    assert prompt.clicks == (Click(160.0, 120.0, True), Click(176.0, 120.0, False))
    assert (prompt.label, prompt.to_name, prompt.width, prompt.height) == ("Object", "image", 320, 240)


@pytest.mark.parametrize("extra, positive", [
    ({"is_positive": True}, True),
    ({"is_positive": False}, False),
    ({}, True),                                             # flag missing: positive
    ({"is_positive": None}, True),
    ({"is_positive": 0}, False),
    ({"is_positive": "false"}, False),
])
def test_polarity_rule(extra, positive):
    prompt = parse_prompt(ctx(keypoint(10, 10), keypoint(20, 20, **extra)))
    assert prompt.clicks[1].positive is positive


def test_value_positive_decides_only_when_is_positive_is_missing():
    region = keypoint(20, 20)
    region["value"]["positive"] = False
    assert parse_prompt(ctx(keypoint(10, 10), region)).clicks[1].positive is False
    region["is_positive"] = True
    assert parse_prompt(ctx(keypoint(10, 10), region)).clicks[1].positive is True


def test_malformed_flag_is_a_clear_error():
    with pytest.raises(PromptError, match="not a boolean"):
        parse_prompt(ctx(keypoint(10, 10, is_positive="maybe")))


def test_click_order_is_kept_as_regions_arrive():
    regions = [keypoint(10, 10), keypoint(20, 20, is_positive=False), keypoint(30, 30), keypoint(40, 40)]
    for n in range(1, len(regions) + 1):
        clicks = parse_prompt(ctx(*regions[:n])).clicks
        assert [c.x for c in clicks] == [32.0, 64.0, 96.0, 128.0][:n]


def test_a_negative_first_region_yields_to_the_earliest_positive_click():
    prompt = parse_prompt(ctx(keypoint(10, 10, is_positive=False), keypoint(20, 20),
                              keypoint(30, 30, is_positive=False), keypoint(40, 40)))
    assert [(c.x, c.positive) for c in prompt.clicks] == [(64.0, True), (32.0, False), (96.0, False), (128.0, True)]


def test_no_prompt_without_context_regions_or_positive_clicks():
    assert parse_prompt(None) is None
    assert parse_prompt({"result": []}) is None
    assert parse_prompt(ctx({"type": "brushlabels", "value": {}})) is None
    assert parse_prompt(ctx(keypoint(10, 10, is_positive=False))) is None


def test_edge_coordinates_stay_inside_the_image():
    prompt = parse_prompt(ctx(keypoint(100.0, 100.0)))
    assert prompt.clicks == (Click(W - 1.0, H - 1.0, True),)


@pytest.mark.parametrize("region, message", [
    (keypoint("abc", 10), "not a number"),
    (keypoint(150.0, 10), "outside"),
    ({**keypoint(10, 10), "original_width": None}, "original_width"),
    ({**keypoint(10, 10), "original_height": 0}, "impossible image size"),
    ({**keypoint(10, 10), "original_width": float("inf")}, "impossible image size"),
    ({**keypoint(10, 10), "original_width": "320"}, "numeric original_width"),
    ({**keypoint(10, 10), "value": "x=10"}, "value must be an object"),
    ({**keypoint(10, 10), "to_name": ["image"]}, "to_name must be"),
])
def test_malformed_regions_are_clear_errors(region, message):
    with pytest.raises(PromptError, match=message):
        parse_prompt(ctx(region))


def test_context_must_be_an_object_with_a_result_list():
    with pytest.raises(PromptError):
        parse_prompt(["not", "a", "dict"])
    with pytest.raises(PromptError):
        parse_prompt({"result": "nope"})


# ----------------------------------------------------------------------- rectangles
def test_rectangle_gives_a_centre_click_and_the_box():
    prompt = parse_prompt(ctx(rectangle(10, 20, 50, 40)))
    assert prompt.box == Box(32.0, 48.0, 192.0, 144.0)
    assert prompt.clicks == (Click(112.0, 96.0, True),)
    assert prompt.label == "Object"


def test_only_the_latest_rectangle_counts():
    prompt = parse_prompt(ctx(rectangle(0, 0, 10, 10), rectangle(50, 50, 20, 20)))
    assert prompt.box == Box(160.0, 120.0, 224.0, 168.0)
    assert prompt.clicks == (Click(192.0, 144.0, True),)


def test_rotated_rectangle_uses_its_bounding_box():
    prompt = parse_prompt(ctx(rectangle(50, 50, 10, 10, rotation=90)))
    # 32×24 px box rotated 90° clockwise about its top-left corner (160, 120)
    assert prompt.box == Box(pytest.approx(136.0), pytest.approx(120.0), pytest.approx(160.0), pytest.approx(152.0))
    assert prompt.clicks[0].x == pytest.approx(148.0) and prompt.clicks[0].y == pytest.approx(136.0)


def test_rectangle_keeps_its_place_in_the_click_order():
    prompt = parse_prompt(ctx(keypoint(10, 10, is_positive=False), rectangle(50, 50, 20, 20), keypoint(60, 60)))
    assert prompt.clicks == (Click(192.0, 144.0, True), Click(32.0, 24.0, False), Click(192.0, 144.0, True))


def test_rectangle_without_area_is_an_error():
    with pytest.raises(PromptError, match="no area"):
        parse_prompt(ctx(rectangle(10, 10, 0, 10)))


# ---------------------------------------------------------------------------- labels
def test_latest_region_decides_the_label_and_stale_regions_of_others_are_ignored():
    prompt = parse_prompt(ctx(keypoint(10, 10, label="Cat"), keypoint(20, 20, label="Dog"),
                              keypoint(30, 30, label="Cat")))
    assert prompt.label == "Cat"
    assert [c.x for c in prompt.clicks] == [32.0, 96.0]


def test_regions_of_another_image_are_ignored():
    prompt = parse_prompt(ctx(keypoint(10, 10, to_name="other"), keypoint(20, 20)))
    assert prompt.to_name == "image" and len(prompt.clicks) == 1


CONFIG = """<View>
  <Image name="image" value="$image"/>
  <Image name="second" value="$img2"/>
  <BrushLabels name="brush" toName="image"><Label value="Cat"/><Label value="Dog"/></BrushLabels>
  <PolygonLabels name="poly" toName="image,second"><Label value="Tree"/></PolygonLabels>
  <KeyPointLabels name="kp" toName="image,second" smart="true">
    <Label value="Cat"/><Label value="Dog"/><Label value="Tree"/>
  </KeyPointLabels>
</View>"""


def prompt_for(label: str | None, to_name: str = "image") -> Prompt:
    return Prompt((Click(1, 1, True),), None, label, to_name, W, H)


@pytest.mark.parametrize("label, to_name, expected", [
    ("Dog", "image", ("brushlabels", "brush", "Dog")),
    ("Tree", "image", ("polygonlabels", "poly", "Tree")),      # the control that lists the label
    ("Tree", "second", ("polygonlabels", "poly", "Tree")),     # the only output control of that image
    (None, "image", ("brushlabels", "brush", "Cat")),          # unlabelled prompt: the control's first label
])
def test_output_control_follows_image_and_label(label, to_name, expected):
    spec = LabelConfig(CONFIG).output_for(prompt_for(label, to_name))
    assert (spec.type, spec.from_name, spec.label) == expected
    assert (spec.to_name, spec.width, spec.height) == (to_name, W, H)


def test_a_label_no_output_control_lists_is_a_prompt_error():
    with pytest.raises(PromptError, match="'Unknown' is not a label of the <brushlabels name='brush'>"):
        LabelConfig(CONFIG).output_for(prompt_for("Unknown"))
    with pytest.raises(PromptError, match="'Cat' is not a label of the <polygonlabels name='poly'>"):
        LabelConfig(CONFIG).output_for(prompt_for("Cat", "second"))


def test_config_errors_are_clear():
    with pytest.raises(PromptError, match="not valid XML"):
        LabelConfig("<View><Image")
    with pytest.raises(PromptError, match="missing"):
        LabelConfig("")
    only_keypoints = '<View><Image name="image" value="$image"/><KeyPointLabels name="k" toName="image"/></View>'
    with pytest.raises(PromptError, match="no BrushLabels or PolygonLabels"):
        LabelConfig(only_keypoints).output_for(prompt_for("Cat"))


def test_image_reference_comes_from_the_image_tag_value():
    config = LabelConfig(CONFIG)
    task = {"id": 1, "data": {"image": "/data/upload/1/a.png"}}
    assert config.image_reference(task, "image") == "/data/upload/1/a.png"
    assert config.image_reference({"id": 1, "data": {"img2": "s3://b/k.jpg"}}, "second") == "s3://b/k.jpg"
    with pytest.raises(PromptError, match="no data field 'image'"):
        config.image_reference({"id": 7, "data": {}}, "image")
    with pytest.raises(PromptError, match="no <Image"):
        config.image_reference({"id": 7, "data": {}}, "missing")


# ---------------------------------------------------------------------------- output
def disc_mask(cx: int = 150, cy: int = 100, r: int = 40) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return (((xx - cx) ** 2 + (yy - cy) ** 2) <= r * r).astype(np.uint8)


def test_brush_rle_decodes_back_to_the_mask_at_original_size():
    mask = disc_mask()
    spec = OutputSpec("brushlabels", "tag", "image", "Object", W, H)
    (result,) = mask_to_results(mask, spec, 0.8)
    assert result["type"] == "brushlabels" and result["value"]["format"] == "rle"
    assert (result["from_name"], result["to_name"], result["value"]["brushlabels"]) == ("tag", "image", ["Object"])
    assert (result["original_width"], result["original_height"], result["score"]) == (W, H, 0.8)
    np.testing.assert_array_equal(brush_mask(result), mask)
    alpha = np.asarray(decode_rle(result["value"]["rle"])).reshape(H, W, 4)[..., 3]
    assert set(np.unique(alpha)) == {0, 255}


def test_polygons_follow_the_outline_in_percent():
    mask = disc_mask()
    mask[200:230, 20:60] = 1                         # a second, smaller object
    mask[5, 5] = 1                                   # a speck: dropped
    spec = OutputSpec("polygonlabels", "poly", "image", "Tree", W, H)
    results = mask_to_results(mask, spec, 0.5)
    assert len(results) == 2
    assert all(r["type"] == "polygonlabels" and r["value"]["closed"] and r["value"]["polygonlabels"] == ["Tree"]
               for r in results)
    drawn = np.zeros_like(mask)
    for r in results:
        points = np.array(r["value"]["points"]) / 100.0 * [W, H] - 0.5
        assert points.min() >= -0.5 and (points.max(axis=0) <= [W, H]).all()
        cv2.fillPoly(drawn, [np.round(points).astype(np.int32)], 1)
    first = np.zeros_like(mask)
    cv2.fillPoly(first, [np.round(np.array(results[0]["value"]["points"]) / 100.0 * [W, H] - 0.5).astype(np.int32)], 1)
    assert iou(first, disc_mask()) > 0.95            # largest first
    expected = mask.copy()
    expected[5, 5] = 0
    assert iou(drawn, expected) > 0.95


def test_empty_mask_gives_no_region_and_a_wrong_size_is_refused():
    spec = OutputSpec("brushlabels", "tag", "image", "Object", W, H)
    assert mask_to_results(np.zeros((H, W), np.uint8), spec, 0.0) == []
    with pytest.raises(ValueError, match="mask is"):
        mask_to_results(np.ones((H + 1, W), np.uint8), spec, 0.5)
