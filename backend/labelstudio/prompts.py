"""Label Studio regions ⇄ clicks: the prompt of an interactive request, and the mask as a result.

Prompt rules (``params.context.result`` of ``/predict``):

* **Keypoints** (``keypointlabels``/``keypoint``, smart tool): ``value.x``/``value.y`` are percent of
  the image; pixels are ``x / 100 * original_width`` and ``y / 100 * original_height``.
* **Positive or negative**: the top-level ``is_positive`` flag decides (Label Studio sets it to
  false for Alt+click). When it is missing, ``value.positive`` decides (the flag's name in the
  Enterprise frontend); when both are missing the keypoint is **positive**. (The official SAM
  examples read a missing flag as negative, which turns every click of a client that omits it
  into a background click and leaves no first click at all.)
* **Order**: clicks keep the order Label Studio sends regions in, which is creation order, so the
  first click stays first as more arrive. FCA-Net's first click must be positive: if the earliest
  region is a negative keypoint, the earliest positive click is moved to the front, the others
  keep their order. A request with no positive prompt has no prompt (empty result).
* **Rectangles** (``rectanglelabels``/``rectangle``, smart tool): the box gives a positive click at
  its centre (in the box's place in the click order) and becomes the zoom region: inference runs
  on a crop around the box and the clicks, enlarged 1.4 times about its centre and at least
  200 px a side (the predictor's zoom-in geometry), and pixels outside that crop are background.
  Label Studio sends every smart rectangle of the label, so only the **latest** rectangle counts;
  earlier ones outline earlier objects. Rotated boxes use their axis-aligned bounding box.
* **Label**: the label of the most recent prompt region is the object's label; prompt regions of
  another label or another image (left over from other objects) are ignored. The mask gets that
  label, which the output control must list (else 400).
* **Shapes**: a region's ``value`` must be an object, ``to_name`` a string, ``original_width`` /
  ``original_height`` finite positive numbers; anything else is a 400 (:class:`PromptError`).

Output: a ``brushlabels`` result (RLE of a 0/255 mask of exactly ``original_height ×
original_width``, ``backend.labelstudio.brush.mask_to_rle``) for the labeling config's
BrushLabels control on that image, or ``polygonlabels`` results (one polygon per outer contour, in
percent) when the image has a PolygonLabels control instead. With several such controls, the one
that lists the clicked label wins, BrushLabels before PolygonLabels.
"""
from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import cv2
import numpy as np

from fcanet_core import Click

from .brush import mask_to_rle
from .regions import (KEYPOINT_TYPES, MASK_TYPES, RECTANGLE_TYPES, Box, PromptError, clamped_click, keypoint_click,
                      original_size, rectangle_box, region_label, region_value)

#: Result types the mask can be given as, BrushLabels first.
OUTPUT_TYPES = MASK_TYPES
#: Polygons smaller than this many pixels are dropped (specks).
MIN_POLYGON_AREA = 9.0
#: Douglas-Peucker tolerance in pixels when simplifying polygon outlines.
POLYGON_TOLERANCE = 1.0


@dataclass(frozen=True)
class Prompt:
    """What the annotator asked for: ordered clicks (first one positive), optional box, label.

    ``width``/``height`` are the original image size the regions refer to.
    """

    clicks: tuple[Click, ...]
    box: Box | None
    label: str | None
    to_name: str
    width: int
    height: int


@dataclass(frozen=True)
class OutputSpec:
    """Where and how the mask goes: result ``type``, control names, label, original size."""

    type: str
    from_name: str
    to_name: str
    label: str | None
    width: int
    height: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict) -> "OutputSpec":
        return cls(**data)


# ----------------------------------------------------------------------- prompts
def parse_prompt(context: dict | None) -> Prompt | None:
    """The prompt in a ``/predict`` context, or ``None`` when there is none (no context, no
    keypoint/rectangle regions, or no positive click).

    Raises:
        PromptError: malformed regions (non-numeric or out-of-range coordinates, missing size).
    """
    if context is None:
        return None
    if not isinstance(context, dict):
        raise PromptError(f"params.context must be an object or null, got {type(context).__name__}")
    regions = context.get("result") or []
    if not isinstance(regions, list):
        raise PromptError("params.context.result must be a list of regions")
    prompt_regions = [r for r in regions if isinstance(r, dict) and r.get("type") in KEYPOINT_TYPES + RECTANGLE_TYPES]
    if not prompt_regions:
        return None
    for region in prompt_regions:
        region_value(region)
    latest = prompt_regions[-1]
    label, to_name = region_label(latest), latest.get("to_name")
    if not isinstance(to_name, str):
        raise PromptError(f"region {latest.get('id')!r}: to_name must be the name of an Image tag (a string)")
    group = [r for r in prompt_regions if r.get("to_name") == to_name and region_label(r) == label]
    width, height = original_size(latest)
    last_box = max((i for i, r in enumerate(group) if r["type"] in RECTANGLE_TYPES), default=None)
    clicks: list[Click] = []
    box = None
    for i, region in enumerate(group):
        if region["type"] in KEYPOINT_TYPES:
            clicks.append(keypoint_click(region, width, height))
        elif i == last_box:
            box = rectangle_box(region, width, height)
            clicks.append(clamped_click((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2, True, width, height))
    clicks = first_click_positive(clicks)
    if not clicks:
        return None
    return Prompt(tuple(clicks), box, label, str(to_name), width, height)


def first_click_positive(clicks: list[Click]) -> list[Click]:
    """Move the earliest positive click to the front if needed; ``[]`` when there is none."""
    first = next((i for i, c in enumerate(clicks) if c.positive), None)
    if first is None:
        return []
    return [clicks[first], *clicks[:first], *clicks[first + 1:]]


# ---------------------------------------------------------------- label config
@dataclass(frozen=True)
class ControlTag:
    """A control of the labeling config: ``type`` lower-case (``brushlabels``), its labels."""

    name: str
    type: str
    to_names: tuple[str, ...]
    labels: tuple[str, ...]


class LabelConfig:
    """The parts of a labeling config (XML) the backend needs: images and output controls."""

    def __init__(self, xml: str) -> None:
        if not isinstance(xml, str) or not xml.strip():
            raise PromptError("the labeling config (label_config) is missing")
        try:
            root = ET.fromstring(xml)
        except ET.ParseError as exc:
            raise PromptError(f"the labeling config is not valid XML: {exc}") from None
        self.images: dict[str, str] = {}
        self.controls: list[ControlTag] = []
        for node in root.iter():
            tag = str(node.tag).lower()
            name = node.get("name")
            if tag == "image" and name:
                self.images[name] = node.get("value", "")
            elif tag in OUTPUT_TYPES and name:
                to_names = tuple(t.strip() for t in (node.get("toName") or "").split(",") if t.strip())
                labels = tuple(child.get("value") for child in node.iter()
                               if str(child.tag).lower() == "label" and child.get("value") is not None)
                self.controls.append(ControlTag(name, tag, to_names, labels))

    def data_field(self, to_name: str) -> str | None:
        """The ``task.data`` field of the Image tag ``to_name`` (``value="$image"`` → ``"image"``);
        ``None`` when the tag is missing or its value is not a ``$`` reference."""
        value = self.images.get(to_name, "")
        return value[1:] if value.startswith("$") else None

    def image_reference(self, task: dict, to_name: str) -> str:
        """The image reference of ``task`` for the Image tag ``to_name`` (``$image`` → ``data["image"]``)."""
        if to_name not in self.images:
            raise PromptError(f"the labeling config has no <Image name={to_name!r}>")
        field = self.data_field(to_name)
        if field is None:
            return self.images[to_name]
        data = task.get("data") if isinstance(task, dict) else None
        reference = data.get(field) if isinstance(data, dict) else None
        if not isinstance(reference, str) or not reference:
            raise PromptError(f"task {task.get('id') if isinstance(task, dict) else None!r} has no "
                              f"data field {field!r} (from <Image value={self.images[to_name]!r}>)")
        return reference

    def output_for(self, prompt: Prompt) -> OutputSpec:
        """The result control for the prompt's image and label (rules in the module docstring)."""
        candidates = [c for c in self.controls if prompt.to_name in c.to_names]
        if not candidates:
            raise PromptError(f"the labeling config has no BrushLabels or PolygonLabels control for "
                              f"image {prompt.to_name!r}: add <BrushLabels name=\"tag\" toName=\"{prompt.to_name}\">")
        candidates.sort(key=lambda c: (prompt.label not in c.labels, OUTPUT_TYPES.index(c.type)))
        control = candidates[0]
        if prompt.label is not None and prompt.label not in control.labels:
            raise PromptError(f"label {prompt.label!r} is not a label of the <{control.type} name={control.name!r}> "
                              "control: give every control the same label values")
        label = prompt.label if prompt.label is not None else (control.labels[0] if control.labels else None)
        return OutputSpec(control.type, control.name, prompt.to_name, label, prompt.width, prompt.height)


# ---------------------------------------------------------------------- output
def mask_to_results(mask: np.ndarray, spec: OutputSpec, score: float) -> list[dict]:
    """Label Studio result regions for a 0/1 mask of the original size (``[]`` for an empty mask)."""
    if mask.shape != (spec.height, spec.width):
        raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]}, the image {spec.width}x{spec.height}")
    if not mask.any():
        return []
    if spec.type == "brushlabels":
        return [brush_result(mask, spec, score)]
    return polygon_results(mask, spec, score)


def _region(spec: OutputSpec, value: dict, score: float) -> dict:
    labels = [spec.label] if spec.label is not None else []
    return {"id": uuid.uuid4().hex[:10], "from_name": spec.from_name, "to_name": spec.to_name,
            "type": spec.type, "original_width": spec.width, "original_height": spec.height,
            "image_rotation": 0, "value": {**value, spec.type: labels}, "score": float(score),
            "readonly": False}


def brush_result(mask: np.ndarray, spec: OutputSpec, score: float) -> dict:
    """One ``brushlabels`` region: Label Studio RLE of the mask scaled to 0/255."""
    rle = mask_to_rle((mask > 0).astype(np.uint8) * 255)
    return _region(spec, {"format": "rle", "rle": rle}, score)


def polygon_results(mask: np.ndarray, spec: OutputSpec, score: float) -> list[dict]:
    """``polygonlabels`` regions, one per outer contour (largest first), points in percent.

    Vertices are pixel centres (``(i + 0.5) / size * 100``); holes are not represented.
    """
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    results = []
    for contour in sorted(contours, key=cv2.contourArea, reverse=True):
        if cv2.contourArea(contour) < MIN_POLYGON_AREA:
            continue
        points = cv2.approxPolyDP(contour, POLYGON_TOLERANCE, True).reshape(-1, 2)
        if len(points) < 3:
            continue
        percent = [[(float(x) + 0.5) / spec.width * 100.0, (float(y) + 0.5) / spec.height * 100.0]
                   for x, y in points]
        results.append(_region(spec, {"points": percent, "closed": True}, score))
    return results

