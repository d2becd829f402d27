"""The robot annotator of the benchmarks and end-to-end tests: the labeling config, keypoint
regions as Label Studio's UI sends them, the next click, and masks decoded from brush results."""
from __future__ import annotations

import uuid
from typing import Sequence

import numpy as np

from fcanet_core import Click, next_click

from ..labelstudio.brush import decode_rle

#: The labeling config of the interactive setup: smart keypoints in, brush mask out, label "Object".
LABEL_CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="tag" toName="image">
    <Label value="Object" background="#FF0000"/>
  </BrushLabels>
  <KeyPointLabels name="tag2" toName="image" smart="true">
    <Label value="Object" smart="true" background="#FFaa00" showInline="true"/>
  </KeyPointLabels>
</View>"""



def keypoint_region(click: Click, width: int, height: int, label: str = "Object") -> dict:
    """A smart keypoint region as Label Studio's labeling UI sends it (``x``/``y`` in percent)."""
    return {
        "id": uuid.uuid4().hex[:10], "from_name": "tag2", "to_name": "image", "type": "keypointlabels",
        "origin": "manual", "original_width": width, "original_height": height, "image_rotation": 0,
        "value": {"x": click.x * 100.0 / width, "y": click.y * 100.0 / height, "width": 0.6,
                  "keypointlabels": [label]},
        "is_positive": bool(click.positive),
    }


def robot_click(pred: np.ndarray, gt: np.ndarray, clicks: Sequence[Click]) -> Click:
    """The robot user's next click, at the centre of its pixel (as a person clicks on a pixel)."""
    click = next_click(pred, gt, clicks)
    return Click(click.x + 0.5, click.y + 0.5, click.positive)


def brush_mask(result: dict) -> np.ndarray:
    """0/1 uint8 H×W mask of a ``brushlabels`` result (the alpha of the decoded RLE)."""
    height, width = int(result["original_height"]), int(result["original_width"])
    rgba = np.asarray(decode_rle(result["value"]["rle"]), dtype=np.uint8).reshape(height, width, 4)
    return (rgba[..., 3] >= 128).astype(np.uint8)


def result_mask(results: Sequence[dict], height: int, width: int) -> np.ndarray:
    """The mask of the ``brushlabels`` result among ``results`` (all zeros when there is none)."""
    brushes = [r for r in results if r.get("type") == "brushlabels"]
    if len(brushes) > 1:
        raise ValueError(f"expected at most one brushlabels result, got {len(brushes)}")
    return brush_mask(brushes[0]) if brushes else np.zeros((height, width), np.uint8)
