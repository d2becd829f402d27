"""Label Studio result regions: the fields both a ``/predict`` prompt and a saved annotation are read from.

A region is one item of an annotation's (or a ``/predict`` context's) ``result``: ``type``,
``to_name``, ``original_width``/``original_height`` (the image size it refers to) and a ``value``
with the geometry in percent of the image and the labels under the type's name. Malformed fields
raise :class:`PromptError` (a 400).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fcanet_core import Click

from ..common.errors import BadRequest
from ..config import parse_bool

KEYPOINT_TYPES = ("keypointlabels", "keypoint")
RECTANGLE_TYPES = ("rectanglelabels", "rectangle")
#: Region types that carry an object mask (our output; corrected masks in annotations).
MASK_TYPES = ("brushlabels", "polygonlabels")


class PromptError(BadRequest):
    """The prompt regions or the labeling config cannot be used."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in original-image pixels, ``x0 <= x1``, ``y0 <= y1``."""

    x0: float
    y0: float
    x1: float
    y1: float


def is_positive(region: dict) -> bool:
    """The keypoint's polarity: ``is_positive``, else ``value.positive``, else positive."""
    for flag in (region.get("is_positive"), region_value(region).get("positive")):
        if flag is not None:
            return _as_bool(flag, region)
    return True


def _as_bool(flag: Any, region: dict) -> bool:
    if isinstance(flag, bool):
        return flag
    if isinstance(flag, (int, float)) and flag in (0, 1):
        return bool(flag)
    if isinstance(flag, str):
        try:
            return parse_bool(flag)
        except ValueError:
            pass
    raise PromptError(f"region {region.get('id')!r}: positive flag {flag!r} is not a boolean")


def region_value(region: dict) -> dict:
    """The region's ``value`` object (``{}`` when absent); 400 when it is anything else."""
    value = region.get("value")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PromptError(f"region {region.get('id')!r}: value must be an object, got {type(value).__name__}")
    return value


def region_label(region: dict) -> str | None:
    """The region's first label (under its type's name, else ``labels``); ``None`` without one."""
    value = region_value(region)
    labels = value.get(region.get("type")) or value.get("labels") or []
    return str(labels[0]) if isinstance(labels, list) and labels else None


def original_size(region: dict) -> tuple[int, int]:
    """``(width, height)`` of the image the region refers to."""
    size = (region.get("original_width"), region.get("original_height"))
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in size):
        raise PromptError(f"region {region.get('id')!r} lacks numeric original_width/original_height")
    if not all(math.isfinite(v) and v >= 1 for v in size):
        raise PromptError(f"region {region.get('id')!r} has an impossible image size {size[0]}x{size[1]}")
    return int(size[0]), int(size[1])


def percent(region: dict, key: str, low: float = 0.0, high: float = 100.0) -> float:
    """``value[key]`` as a finite number within ``[low, high]`` (``rotation`` defaults to 0)."""
    raw = region_value(region).get(key, 0.0 if key == "rotation" else None)
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise PromptError(f"region {region.get('id')!r}: value.{key} = {raw!r} is not a number") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise PromptError(f"region {region.get('id')!r}: value.{key} = {number} is outside [{low}, {high}]")
    return number


def clamped_click(x: float, y: float, positive: bool, width: int, height: int) -> Click:
    """A click at ``(x, y)`` moved inside a ``width`` × ``height`` image."""
    return Click(min(max(x, 0.0), width - 1.0), min(max(y, 0.0), height - 1.0), positive)


def keypoint_click(region: dict, width: int, height: int) -> Click:
    """A keypoint region as a click in pixels of a ``width`` × ``height`` image (its polarity included)."""
    x = percent(region, "x") / 100.0 * width
    y = percent(region, "y") / 100.0 * height
    return clamped_click(x, y, is_positive(region), width, height)


def rectangle_box(region: dict, width: int, height: int) -> Box:
    """A rectangle region as a pixel box within the image (a rotated one: its axis-aligned bounds)."""
    x, y = percent(region, "x") / 100.0 * width, percent(region, "y") / 100.0 * height
    w, h = percent(region, "width") / 100.0 * width, percent(region, "height") / 100.0 * height
    if w <= 0 or h <= 0:
        raise PromptError(f"region {region.get('id')!r}: rectangle has no area")
    angle = math.radians(percent(region, "rotation", -360.0, 360.0))
    cos, sin = math.cos(angle), math.sin(angle)
    corners = [(x + cx * cos - cy * sin, y + cx * sin + cy * cos) for cx, cy in ((0, 0), (w, 0), (w, h), (0, h))]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    box = Box(max(0.0, min(xs)), max(0.0, min(ys)), min(float(width), max(xs)), min(float(height), max(ys)))
    if box.x1 <= box.x0 or box.y1 <= box.y0:
        raise PromptError(f"region {region.get('id')!r}: rectangle lies outside the image")
    return box
