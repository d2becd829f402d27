"""Python ports of the CVAT code that reads an interactor function: its annotations and its reply.

Each function names the CVAT source file (repository cvat-ai/cvat) and the commit it was read at.
CVAT's server passes an interactor's reply to the browser unchanged, so the reply rules are the
UI's TypeScript; the ports keep its arithmetic exactly.
"""
from __future__ import annotations

import json
from typing import Any

import cv2
import numpy as np

#: Values of ``FunctionKind`` (cvat/apps/lambda_manager/views.py @e4c12a27 and its models).
FUNCTION_KINDS = ("detector", "interactor", "reid", "tracker")
#: The SAM plugin hooks calls to this function id (cvat-ui/plugins/sam/src/ts/index.tsx @108df1e5).
SAM_PLUGIN_ID = "pth-facebookresearch-sam-vit-h"
#: cvat-ui/.../controls-side-bar/tools-control.tsx @298b6166: older interactors are disabled.
MIN_SUPPORTED_INTERACTOR_VERSION = 2


class InvalidFunctionMetadataError(Exception):
    """CVAT skips a function whose metadata raises this (views.py @e4c12a27, ``LambdaGateway.list``)."""


def nuclio_annotations(annotations: dict[str, Any]) -> dict[str, str]:
    """YAML annotations as nuclio hands them to CVAT: ``map[string]string`` (null → "", true → "true")."""
    def text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)
    return {str(key): text(value) for key, value in annotations.items()}


def lambda_function(data: dict) -> dict:
    """``LambdaFunction.__init__`` then ``to_dict()`` of cvat/apps/lambda_manager/views.py @e4c12a27.

    ``data`` is one function as nuclio's ``/api/functions`` lists it (metadata, spec, status).
    The label parsing is reduced to its checks, which an interactor's empty ``spec`` passes.
    """
    function_id = data["metadata"]["name"]
    meta_anno = data["metadata"]["annotations"]
    kind = meta_anno.get("type")
    if kind not in FUNCTION_KINDS:
        raise InvalidFunctionMetadataError(f"{function_id} lambda function has unknown type: {kind!r}")
    spec = json.loads(meta_anno.get("spec") or "[]")
    labels = [label["name"] for label in spec]
    if len(labels) != len(set(labels)):
        raise InvalidFunctionMetadataError(f"{function_id} lambda function has non-unique labels")
    description = data["spec"]["description"]
    response = {
        "id": function_id,
        "kind": kind,
        "labels_v2": labels,
        "description": description,
        "name": meta_anno.get("name", function_id),
        "version": int(meta_anno.get("version", "1")),
    }
    if kind == "interactor":
        response.update({
            "min_pos_points": int(meta_anno.get("min_pos_points", 1)),
            "min_neg_points": int(meta_anno.get("min_neg_points", -1)),
            "startswith_box": bool(meta_anno.get("startswith_box", False)),
            "startswith_box_optional": bool(meta_anno.get("startswith_box_optional", False)),
            "help_message": meta_anno.get("help_message", ""),
            "animated_gif": meta_anno.get("animated_gif", ""),
        })
    return response


def mask2rle(mask: list[int]) -> list[int]:
    """``mask2Rle`` of cvat-core/src/rle-utils.ts @0b94adab: run lengths, the first run is of zeros.

    A run ends wherever ``mask[idx - 1] === val`` is false, so a mask must hold exactly two values.
    """
    acc: list[int] = []
    if not mask:
        return acc
    if mask[0] > 0:
        acc.extend([0, 1])
    else:
        acc.append(1)
    for idx in range(1, len(mask)):
        if mask[idx - 1] == mask[idx]:
            acc[-1] += 1
        else:
            acc.append(1)
    return acc


def rle2mask(rle: list[int], width: int, height: int) -> list[int]:
    """``rle2Mask`` of cvat-core/src/rle-utils.ts @0b94adab (0/1 values, ``width * height`` long)."""
    decoded = [0] * (width * height)
    decoded_idx, value = 0, 0
    for count in rle:
        for _ in range(count):
            decoded[decoded_idx] = value
            decoded_idx += 1
        value = abs(value - 1)
    return decoded


def receive_points_from_mask(mask: list[list[int]], left: int, top: int) -> list[list[int]]:
    """The polygon the 2024 UI derives from a mask (tools-control.tsx @298b6166
    ``receivePointsFromMask``: OpenCV findContours on a CV_8UC1 image, largest external contour)."""
    image = np.asarray(mask, dtype=np.uint8)
    contours, _ = cv2.findContours(image, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return []
    largest = max(contours, key=cv2.contourArea)
    return [[int(x) + left, int(y) + top] for x, y in largest.reshape(-1, 2)]


def ui_2024_interaction(response: dict) -> tuple[list[int], list[list[int]]]:
    """Branch (a): the 2024 UI (tools-control.tsx @298b6166, ``InteractorResults`` of
    cvat-core/src/lambda-manager.ts @07813b1f). Returns ``(rle with bounds, polygon points)``.

    Raises like the UI does: ``KeyError``/``TypeError`` where JavaScript would read a property of
    undefined (no ``mask``: "Cannot read properties of undefined (reading 'flat')").
    """
    mask = response["mask"]
    points = response.get("points")
    if points is None:
        left = response["bounds"][0] if response.get("bounds") else 0
        top = response["bounds"][1] if response.get("bounds") else 0
        points = receive_points_from_mask(mask, left, top)
    rle = mask2rle([value for row in mask for value in row])
    if response.get("bounds"):
        rle.extend(response["bounds"])
    else:
        height, width = len(mask), len(mask[0])
        rle.extend([0, 0, width - 1, height - 1])
    return rle, points


def ui_native_interaction(result: dict) -> list[dict]:
    """Branch (b): the UI after PR #10329 (cvat-core/src/lambda-manager.ts, upstream after
    2026-03-04): a ``mask`` reply is wrapped as one ``mask`` shape; ``bounds``/``points`` are ignored."""
    if "mask" in result:
        mask = result["mask"]
        mask_height, mask_width = len(mask), len(mask[0])
        rle = mask2rle([value for row in mask for value in row])
        if not rle:
            rle.extend([0, 0, 0, 0])
        else:
            rle.extend([0, 0, mask_width - 1, mask_height - 1])
        return [{"points": rle, "group": 0, "source": "semi-auto", "attributes": [], "occluded": False,
                 "rotation": 0, "type": "mask"}]
    return [shape for shape in result["shapes"] if shape["type"] == "mask"]
