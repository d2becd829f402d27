"""Images sent inside a request as file bytes (CVAT sends the frame with every click).

:class:`FrameDecoder` applies the image limits of :mod:`backend.images.fetch` (``MAX_IMAGE_BYTES``,
``MAX_IMAGE_PIXELS``) and its decoding (EXIF orientation, any pixel format to RGB), and keeps
the last ``IMAGE_CACHE_SIZE`` decoded frames keyed by a digest of their bytes: the same frame
arrives again with every click and is decoded once. :func:`place_prompt` checks clicks and box
against the decoded frame's size.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Sequence

import numpy as np

from fcanet_core import Click

from ..common.lru import LRUCache
from ..config import Settings
from ..labelstudio.prompts import first_click_positive
from ..labelstudio.regions import Box, PromptError
from .fetch import ImageTooLarge, decode_image


def frame_digest(data: bytes) -> str:
    """A short content digest of image bytes (cache and zoom-in key)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class FrameDecoder:
    """Decodes image bytes within the settings' limits, with an LRU cache of decoded frames.

    Args:
        settings: ``max_image_bytes``, ``max_image_pixels``, ``image_cache_size``.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache: LRUCache[np.ndarray] = LRUCache(settings.image_cache_size)

    def decode(self, data: bytes) -> tuple[np.ndarray, str]:
        """``(image, digest)``: the read-only RGB uint8 H×W×3 frame and its bytes' digest.

        Raises:
            ImageTooLarge: more than ``MAX_IMAGE_BYTES`` bytes or ``MAX_IMAGE_PIXELS`` pixels.
            ImageDecodeError: the bytes are not a decodable image.
        """
        if len(data) > self.settings.max_image_bytes:
            raise ImageTooLarge(f"image is {len(data)} bytes, more than MAX_IMAGE_BYTES="
                                f"{self.settings.max_image_bytes}")
        digest = frame_digest(data)
        image = self.cache.get(digest)
        if image is None:
            image = decode_image(data, self.settings.max_image_pixels)
            self.cache.put(digest, image)
        return image, digest


@lru_cache(maxsize=4)
def get_frame_decoder(settings: Settings) -> FrameDecoder:
    """The process-wide :class:`FrameDecoder` for ``settings``."""
    return FrameDecoder(settings)


def place_prompt(clicks: Sequence[Click], box: Box | None, width: int,
                 height: int) -> tuple[list[Click], Box | None]:
    """Clicks and box fitted to a ``width`` × ``height`` image.

    A click may lie anywhere in ``[0, width] × [0, height]`` (the far edges included, as a
    canvas gives them) and is moved onto the last pixel row or column when on a far edge. The
    box is clipped to the image. Without a positive click, the box's centre becomes the first
    click (the way a Label Studio rectangle prompts); the earliest positive click goes first.

    Raises:
        PromptError: a click outside the image, a box outside it, or no positive prompt.
    """
    placed = []
    for click in clicks:
        if not (0.0 <= click.x <= width and 0.0 <= click.y <= height):
            raise PromptError(f"click ({click.x:g}, {click.y:g}) lies outside the {width}x{height} image")
        placed.append(Click(min(click.x, width - 1.0), min(click.y, height - 1.0), click.positive))
    if box is not None:
        box = Box(max(box.x0, 0.0), max(box.y0, 0.0), min(box.x1, float(width)), min(box.y1, float(height)))
        if box.x1 <= box.x0 or box.y1 <= box.y0:
            raise PromptError(f"the box has no area inside the {width}x{height} image")
        if not any(c.positive for c in placed):
            centre = Click(min((box.x0 + box.x1) / 2, width - 1.0), min((box.y0 + box.y1) / 2, height - 1.0), True)
            placed.insert(0, centre)
    placed = first_click_positive(placed)
    if not placed:
        raise PromptError("no positive click or box: the first click must be positive")
    return placed, box
