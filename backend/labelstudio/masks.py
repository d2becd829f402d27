"""The object masks of an annotation: brush (Label Studio RLE) and polygon regions decoded in pixels,
each with the keypoint clicks that produced it."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from fcanet_core import Click

from .annotations import CLICK_TYPE
from .brush import decode_rle
from .regions import MASK_TYPES, PromptError, keypoint_click, region_label

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Instance:
    """One object of an annotation: its mask (uint8 0/1), label, region id and prompt clicks."""

    region_id: str
    label: str
    mask: np.ndarray
    clicks: tuple[Click, ...] = ()


def _label(region: dict) -> str:
    return region_label(region) or ""


def _region_size(region: dict, height: int, width: int) -> None:
    size = (region.get("original_height"), region.get("original_width"))
    if size != (height, width):
        raise ValueError(f"region {region.get('id')!r} is for a {size[1]}×{size[0]} image, "
                         f"the task image is {width}×{height}")


def rle_length(rle: Any) -> int:
    """The number of values a Label Studio brush RLE declares (its first 32 bits), read without
    decoding; ``ValueError`` unless ``rle`` is a list of byte values with a header."""
    if not isinstance(rle, list) or len(rle) < 5 or not all(isinstance(b, int) and 0 <= b <= 255 for b in rle):
        raise ValueError("the RLE must be a list of byte values (0-255)")
    return int.from_bytes(bytes(rle[:4]), "big")


def decode_mask(region: dict, height: int, width: int) -> np.ndarray:
    """A brush (Label Studio RLE) or polygon (percent points) region as a uint8 0/1 H×W mask.

    The RLE's declared length is checked against the image before anything is decoded, so a
    region cannot make the decoder allocate more than the image's own RGBA size.
    """
    _region_size(region, height, width)
    value = region.get("value") or {}
    if region.get("type") == "brushlabels":
        if value.get("format", "rle") != "rle" or not isinstance(value.get("rle"), list):
            raise ValueError(f"brush region {region.get('id')!r} has no RLE")
        declared = rle_length(value["rle"])
        if declared != height * width * 4:
            raise ValueError(f"brush region {region.get('id')!r} declares {declared} values, "
                             f"expected {height * width * 4} for {width}×{height} RGBA")
        try:
            flat = decode_rle(value["rle"])
        except (ValueError, IndexError):
            raise ValueError(f"brush region {region.get('id')!r} has a truncated RLE") from None
        return (flat.reshape(height, width, 4)[..., 3] >= 128).astype(np.uint8)
    points = np.asarray(value.get("points") or [], dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < 3 or points.shape[1] != 2:
        raise ValueError(f"polygon region {region.get('id')!r} needs at least 3 [x%, y%] points")
    pixels = np.round(points / 100.0 * [width, height]).astype(np.int32)
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(mask, [pixels], 1)
    return mask


def _click(region: dict, height: int, width: int) -> Click | None:
    """A keypoint region as a click (as for prompts); ``None`` when it is malformed."""
    try:
        return keypoint_click(region, width, height)
    except PromptError:
        return None


def decode_regions(regions: Sequence[dict], height: int, width: int) -> list[Instance]:
    """Decode every mask region; keypoints of the same label become the instance's clicks when the
    first positive one lies on its mask (the prompts that produced it)."""
    clicks_by_label: dict[str, list[Click]] = {}
    for region in regions:
        if region.get("type") == CLICK_TYPE:
            click = _click(region, height, width)
            if click is not None:
                clicks_by_label.setdefault(_label(region), []).append(click)
    instances = []
    for region in regions:
        if region.get("type") not in MASK_TYPES:
            continue
        mask = decode_mask(region, height, width)
        if not mask.any():
            logger.warning("region %r has an empty mask: skipped", region.get("id"))
            continue
        label = _label(region)
        clicks = clicks_by_label.get(label, [])
        first = next((c for c in clicks if c.positive), None)
        own = tuple(clicks) if first is not None and mask[int(first.y), int(first.x)] else ()
        instances.append(Instance(str(region.get("id", len(instances))), label, mask, own))
    return instances
