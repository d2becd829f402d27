"""Jobs that workers run, and their payloads.

``segment`` (queue ``inference``) answers one interactive click. Its payload names the image (task
id, image reference, and the Label Studio URL and token needed to fetch it) instead of carrying its
bytes: the worker fetches the image itself into its LRU cache, so an image travels from Label
Studio to the worker once and never through Redis. The worker's own ``LABEL_STUDIO_URL`` /
``LABEL_STUDIO_API_KEY`` take precedence over the credentials in the payload. The web process
without ``REDIS_URL`` calls :func:`run_segment` directly; both paths give the same result.

``segment_frame`` (queue ``inference``) answers a click whose image comes with the request (CVAT
sends the frame's file bytes): the bytes travel in the payload, the mask comes back bit-packed.
:func:`run_segment_frame` is the same path without a queue.

The image size a region claims (``original_width`` × ``original_height``, the size of the mask to
send back) is checked against ``MAX_IMAGE_PIXELS`` before anything is fetched, and never decides an
allocation on the image: the prediction runs on the image as downloaded, with the clicks scaled to
it, and only the 0/1 mask is resized to the claimed size when the two differ.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np
from rq import get_current_job

from fcanet_core import Click

from ..common.errors import BackendError, BadRequest
from ..config import Settings, get_settings
from ..images.fetch import ImageTooLarge, get_fetcher
from ..images.frames import get_frame_decoder, place_prompt
from ..labelstudio.client import Credentials
from ..labelstudio.prompts import OutputSpec, mask_to_results
from ..labelstudio.regions import Box
from .engine import get_engine

logger = logging.getLogger(__name__)

#: Import path of :func:`segment`, as enqueued by the web process.
SEGMENT_JOB = "backend.jobs.segment"
#: Import path of :func:`segment_frame`.
SEGMENT_FRAME_JOB = "backend.jobs.segment_frame"


@dataclass(frozen=True)
class SegmentRequest:
    """One click request: which image, which clicks (and box), where the mask goes."""

    image: str
    task_id: int | None
    credentials: Credentials
    clicks: tuple[Click, ...]
    box: Box | None
    output: OutputSpec
    model_version: str | None = None

    def to_payload(self) -> dict:
        """The JSON-safe job payload (clicks as ``[x, y, positive]`` rows)."""
        return {
            "image": self.image,
            "task_id": self.task_id,
            "credentials": self.credentials.to_dict(),
            "clicks": [[float(c.x), float(c.y), bool(c.positive)] for c in self.clicks],
            "box": None if self.box is None else [self.box.x0, self.box.y0, self.box.x1, self.box.y1],
            "output": self.output.to_dict(),
            "model_version": self.model_version,
        }

    @classmethod
    def from_payload(cls, payload: dict) -> "SegmentRequest":
        """Inverse of :meth:`to_payload`; :class:`BadRequest` for a malformed payload."""
        try:
            return cls(
                image=str(payload["image"]),
                task_id=None if payload.get("task_id") is None else int(payload["task_id"]),
                credentials=Credentials.from_dict(payload.get("credentials")),
                clicks=tuple(Click(float(x), float(y), bool(p)) for x, y, p in payload["clicks"]),
                box=None if payload.get("box") is None else Box(*(float(v) for v in payload["box"])),
                output=OutputSpec.from_dict(payload["output"]),
                model_version=payload.get("model_version"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"malformed segment job payload ({type(exc).__name__})") from None


@dataclass(frozen=True)
class FrameRequest:
    """One click on an image sent with the request: its file bytes, the clicks, an optional box.

    Clicks are in image pixels, first click (positive) first; they and the box are checked
    against the decoded image (:func:`backend.images.frames.place_prompt`).
    """

    image: bytes
    clicks: tuple[Click, ...]
    box: Box | None = None

    def to_payload(self) -> dict:
        """The job payload (the image bytes as they are: RQ pickles job arguments)."""
        return {
            "image": self.image,
            "clicks": [[float(c.x), float(c.y), bool(c.positive)] for c in self.clicks],
            "box": None if self.box is None else [self.box.x0, self.box.y0, self.box.x1, self.box.y1],
        }

    @classmethod
    def from_payload(cls, payload: dict) -> "FrameRequest":
        """Inverse of :meth:`to_payload`; :class:`BadRequest` for a malformed payload."""
        try:
            return cls(
                image=bytes(payload["image"]),
                clicks=tuple(Click(float(x), float(y), bool(p)) for x, y, p in payload["clicks"]),
                box=None if payload.get("box") is None else Box(*(float(v) for v in payload["box"])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"malformed frame job payload ({type(exc).__name__})") from None


def run_segment_frame(request: FrameRequest, settings: Settings, stop: threading.Event | None = None) -> dict:
    """Decode the frame, predict: ``{"mask": packed bits, "width", "height", "score", "model_version"}``.

    ``mask`` is ``np.packbits`` of the H×W 0/1 mask, row-major (:func:`unpack_mask` inverts it).
    ``stop`` (set by a caller that gave up) ends the prediction at its next stage.

    Raises:
        BackendError: image limits or decoding (413/422), clicks or box outside the image (400).
    """
    started = time.perf_counter()
    check_click_count(request.clicks, settings.max_clicks)
    engine = get_engine(settings)
    image, digest = get_frame_decoder(settings).decode(request.image)
    height, width = image.shape[:2]
    clicks, box = place_prompt(request.clicks, request.box, width, height)
    mask, score = engine.segment(image, clicks, image_key=f"frame:{digest}", box=box, stop=stop)
    version = engine.model_version
    logger.info("segmented", extra={"frame": digest, "clicks": len(clicks), "box": box is not None,
                                    "model_version": version, "score": round(score, 4),
                                    "duration_ms": round(1000 * (time.perf_counter() - started), 1)})
    return {"mask": np.packbits(mask > 0).tobytes(), "width": width, "height": height, "score": score,
            "model_version": version}


def unpack_mask(result: dict) -> np.ndarray:
    """The uint8 H×W 0/1 mask of a :func:`run_segment_frame` result."""
    height, width = result["height"], result["width"]
    bits = np.unpackbits(np.frombuffer(result["mask"], dtype=np.uint8), count=height * width)
    return bits.reshape(height, width)


def check_click_count(clicks: tuple[Click, ...], max_clicks: int) -> None:
    """:class:`BadRequest` when a request carries more than ``MAX_CLICKS`` clicks (each one is a
    distance map the network's input is built from)."""
    if len(clicks) > max_clicks:
        raise BadRequest(f"the request carries {len(clicks)} clicks, more than MAX_CLICKS={max_clicks}: "
                         "start a new region instead")


def check_output_size(output: OutputSpec, max_pixels: int) -> None:
    """:class:`ImageTooLarge` when the claimed image size is over ``MAX_IMAGE_PIXELS``."""
    if output.width * output.height > max_pixels:
        raise ImageTooLarge(f"the regions claim a {output.width}x{output.height} image (original_width x "
                            f"original_height), more than MAX_IMAGE_PIXELS={max_pixels}")


def to_image_pixels(request: SegmentRequest, height: int, width: int) -> tuple[tuple[Click, ...], Box | None]:
    """The request's clicks and box, given in the claimed size, in the pixels of the real image."""
    sx, sy = width / request.output.width, height / request.output.height
    if (sx, sy) == (1.0, 1.0):
        return request.clicks, request.box
    logger.warning("image size differs from the size Label Studio reports; scaling the clicks",
                   extra={"image_size": [width, height], "original_size": [request.output.width,
                                                                           request.output.height]})
    clicks = tuple(Click(min(c.x * sx, width - 1.0), min(c.y * sy, height - 1.0), c.positive)
                   for c in request.clicks)
    box = request.box
    if box is not None:
        box = Box(box.x0 * sx, box.y0 * sy, box.x1 * sx, box.y1 * sy)
    return clicks, box


def fit_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """The 0/1 mask at the claimed size (nearest neighbour when it differs)."""
    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)


def fetch_image(request: SegmentRequest, settings: Settings) -> np.ndarray:
    """The request's image through the process's fetcher (its cache), with the Label Studio
    credentials the settings and the request give."""
    credentials = Credentials.resolve(settings, request.credentials)
    return get_fetcher(settings).fetch(request.image, request.task_id, credentials)


def run_segment(request: SegmentRequest, settings: Settings, stop: threading.Event | None = None) -> dict:
    """Fetch the image, predict, encode: ``{"result": [...], "score", "model_version"}``; ``stop``
    (set by a caller that gave up) ends the prediction at its next stage.

    Raises:
        BackendError: image, prompt or Label Studio problems (with an HTTP status).
    """
    started = time.perf_counter()
    check_click_count(request.clicks, settings.max_clicks)
    check_output_size(request.output, settings.max_image_pixels)
    engine = get_engine(settings)
    image = fetch_image(request, settings)
    fetched = time.perf_counter()
    clicks, box = to_image_pixels(request, *image.shape[:2])
    mask, score = engine.segment(image, clicks, image_key=f"{request.task_id}:{request.image}", box=box,
                                 stop=stop)
    segmented = time.perf_counter()
    result = mask_to_results(fit_mask(mask, request.output.width, request.output.height), request.output, score)
    version = engine.model_version
    if request.model_version and request.model_version != version:
        logger.warning("answered with another model version than announced",
                       extra={"model_version": version, "announced": request.model_version})
    done = time.perf_counter()
    logger.info("segmented", extra={"task_id": request.task_id, "clicks": len(request.clicks),
                                    "box": request.box is not None, "model_version": version,
                                    "score": round(score, 4), "duration_ms": round(1000 * (done - started), 1),
                                    "fetch_ms": round(1000 * (fetched - started), 1),
                                    "predict_ms": round(1000 * (segmented - fetched), 1),
                                    "encode_ms": round(1000 * (done - segmented), 1)})
    return {"result": result, "score": score, "model_version": version}


def segment(payload: dict) -> dict:
    """Worker job on the ``inference`` queue: :func:`run_segment` for a payload."""
    with errors_in_job_meta():
        return run_segment(SegmentRequest.from_payload(payload), get_settings())


def segment_frame(payload: dict) -> dict:
    """Worker job on the ``inference`` queue: :func:`run_segment_frame` for a payload."""
    with errors_in_job_meta():
        return run_segment_frame(FrameRequest.from_payload(payload), get_settings())


@contextlib.contextmanager
def errors_in_job_meta() -> Iterator[None]:
    """Store an expected failure (:class:`BackendError`) in the job's ``meta["error"]`` (status
    and detail) before the job fails, so the waiting process can answer with the same error."""
    try:
        yield
    except BackendError as exc:
        job = get_current_job()
        if job is not None:
            job.meta["error"] = exc.to_dict()
            job.save_meta()
        raise
