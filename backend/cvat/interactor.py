"""CVAT interactor: CVAT's request body → clicks and box → the shared inference path → a full-frame mask.

CVAT calls an interactor function with (``cvat/apps/lambda_manager/views.py``)::

    {"image": "<base64 of the frame's file bytes>", "pos_points": [[x, y], ...],
     "neg_points": [[x, y], ...], "obj_bbox": null | [] | [[x1, y1], [x2, y2]] | ...,
     "threshold": <optional, never sent by the interactive UI>}

* Points are full-frame pixel coordinates, x first, possibly fractional. CVAT resends every click
  with each request, positives and negatives in two lists, so their relative order is lost:
  FCA-Net's first click is ``pos_points[0]``, then the other positives, then the negatives.
* ``obj_bbox`` holds corner pairs; the latest box (the last two corners) is handled like a Label
  Studio rectangle: it restricts the prediction to its region and, when there is no positive
  point, its centre is the first click. A flat ``[x1, y1, x2, y2]`` is read as one box.
* ``threshold`` is not used: the mask is the model's own decision (probability > 0.5).

The click then runs exactly where a Label Studio click runs (:func:`backend.inference.queueing.make_runner`:
the RQ ``inference`` queue when ``REDIS_URL`` is set, else this process), with the same model
version, SIS / zoom settings, image limits and error classes.

The answer is ``{"mask": H×W rows of 0/255}`` at the full frame size, without ``bounds``: the one
reply every CVAT 2.x UI accepts. Errors are ``{"status", "detail", "error"}`` with the HTTP
status (4xx for bad input, 5xx when the backend fails); :meth:`CvatInteractor.answer` never raises.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import uuid
from numbers import Real
from typing import Any

import numpy as np

from fcanet_core import Click

from ..common.errors import BackendError, BadRequest
from ..config import Settings
from ..images.fetch import ImageTooLarge
from ..inference.jobs import FrameRequest, unpack_mask
from ..inference.queueing import Runner, make_runner
from ..labelstudio.regions import Box

logger = logging.getLogger(__name__)

#: The two JSON tokens of a mask pixel: background and object (CVAT wants exactly two values).
_PIXEL_TOKENS = ("0,", "255,")


def parse_request(body: Any, max_image_bytes: int) -> FrameRequest:
    """The :class:`FrameRequest` of a CVAT interactor body (a dict, or JSON text or bytes).

    Raises:
        BadRequest: not a JSON object, no or malformed image, malformed points or box, no
            positive point and no box.
        ImageTooLarge: the image has more than ``max_image_bytes`` bytes.
    """
    if isinstance(body, (bytes, bytearray, str)):
        try:
            body = json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest(f"the request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"the request body must be a JSON object, got {type(body).__name__}")
    positives = _points(body.get("pos_points"), "pos_points")
    negatives = _points(body.get("neg_points"), "neg_points")
    box = _latest_box(body.get("obj_bbox"))
    if not positives and box is None:
        raise BadRequest("no positive point: click on the object first (pos_points is empty)")
    clicks = [Click(x, y, True) for x, y in positives] + [Click(x, y, False) for x, y in negatives]
    return FrameRequest(_image_bytes(body.get("image"), max_image_bytes), tuple(clicks), box)


def _image_bytes(value: Any, max_bytes: int) -> bytes:
    if not isinstance(value, str) or not value:
        raise BadRequest("the request has no image (base64 of the frame's file in 'image')")
    text = value.partition(",")[2] if value.startswith("data:") else value
    if len(text) // 4 * 3 > max_bytes + 3:
        raise ImageTooLarge(f"image is about {len(text) // 4 * 3} bytes, more than MAX_IMAGE_BYTES={max_bytes}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"'image' is not base64: {exc}") from None


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise BadRequest(f"{where}: {value!r} is not a finite number")
    return float(value)


def _points(value: Any, name: str) -> list[tuple[float, float]]:
    """``[[x, y], ...]`` (``null`` = none) as float pairs."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise BadRequest(f"{name} must be a list of [x, y] points, got {type(value).__name__}")
    points = []
    for i, point in enumerate(value):
        if not isinstance(point, (list, tuple)) or len(point) != 2:
            raise BadRequest(f"{name}[{i}] must be an [x, y] pair, got {point!r}")
        points.append((_number(point[0], f"{name}[{i}][0]"), _number(point[1], f"{name}[{i}][1]")))
    return points


def _latest_box(value: Any) -> Box | None:
    """The last box of ``obj_bbox`` (corner pairs, or one flat ``[x1, y1, x2, y2]``); None for none."""
    if value is None or (isinstance(value, (list, tuple)) and not value):
        return None
    if isinstance(value, (list, tuple)) and len(value) == 4 and not any(isinstance(v, (list, tuple)) for v in value):
        value = [value[:2], value[2:]]
    corners = _points(value, "obj_bbox")
    if len(corners) % 2:
        raise BadRequest(f"obj_bbox must hold corner pairs [[x1, y1], [x2, y2]], got {len(corners)} points")
    (x1, y1), (x2, y2) = corners[-2:]
    return Box(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def mask_json(mask: np.ndarray) -> str:
    """``{"mask": [[0|255, ...], ...]}`` for a 0/1 (or boolean) H×W mask, compact JSON.

    Built row by row from runs of equal pixels (string repetition), which costs a few
    milliseconds per megapixel instead of the ~0.1 s of ``json.dumps(mask.tolist())``.
    """
    binary = np.asarray(mask) > 0
    width = binary.shape[1]
    background = "[" + _PIXEL_TOKENS[0] * (width - 1) + "0]"
    edges = binary[:, 1:] != binary[:, :-1]
    rows = []
    for row, row_edges in zip(binary, edges):
        cuts = np.flatnonzero(row_edges)
        if not cuts.size and not row[0]:
            rows.append(background)
            continue
        bounds = [0, *(cuts + 1).tolist(), width]
        value = int(row[0])
        runs = []
        for start, end in zip(bounds[:-1], bounds[1:]):
            runs.append(_PIXEL_TOKENS[value] * (end - start))
            value ^= 1
        rows.append("[" + "".join(runs)[:-1] + "]")
    return '{"mask":[' + ",".join(rows) + "]}"


class CvatInteractor:
    """Answers CVAT interactor requests on the backend's inference path.

    Args:
        settings: the backend settings (``REDIS_URL`` chooses queue or in-process inference;
            ``MAX_IMAGE_BYTES``/``MAX_IMAGE_PIXELS`` bound the frame).
        runner: where clicks run; default :func:`backend.inference.queueing.make_runner` (loads the model
            now when inference runs in this process).
    """

    def __init__(self, settings: Settings, runner: Runner | None = None) -> None:
        self.settings = settings
        self.runner = runner or make_runner(settings)

    def answer(self, body: Any) -> tuple[int, str]:
        """``(status, JSON text)`` for one request body: 200 and the mask, or an error body."""
        try:
            request = parse_request(body, self.settings.max_image_bytes)
            return 200, mask_json(unpack_mask(self.runner.segment_frame(request)))
        except BackendError as exc:
            level = logging.WARNING if exc.status < 500 else logging.ERROR
            logger.log(level, "interaction refused", extra={"status": exc.status, "detail": exc.detail})
            return exc.status, json.dumps(exc.to_dict())
        except Exception:  # noqa: BLE001 (the function must answer, whatever failed)
            request_id = uuid.uuid4().hex[:12]
            logger.exception("interaction failed", extra={"request_id": request_id})
            error = BackendError(f"internal error (request {request_id}): the backend's log has the details")
            return error.status, json.dumps(error.to_dict())
