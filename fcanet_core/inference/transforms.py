"""Image and click geometry of the predictor, in one place.

* Input normalisation: any common image array → RGB uint8 H×W×3.
* The official resize: short side to 512 with ``int`` truncated sizes, clicks scaled by
  truncation, the probability map brought back with cv2 bilinear interpolation.
* Zoom-in: a crop around the clicks and the previous mask (as RITM's ZoomIn), with the
  transform for images, clicks and masks and the inverse for probability maps.

Sizes are (height, width); clicks are (x, y).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from ..clicks import Click

#: Short side of the network input in the official inference code.
SHORT_SIDE = 512


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as RGB uint8 H×W×3.

    Accepts H×W (grey), H×W×3 (RGB) and H×W×4 (RGBA; alpha is dropped) arrays of type
    uint8, uint16 (scaled by 1/257), bool (True → 255), other integers within 0..255, or
    floats within [0, 1].

    Raises:
        ValueError: for other shapes, empty images or values out of range.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"image must be an H×W, H×W×3 or H×W×4 array, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    image = _to_uint8(image)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * 255
    if image.dtype == np.uint16:
        return np.round(image / 257.0).astype(np.uint8)
    if np.issubdtype(image.dtype, np.integer):
        if image.min() < 0 or image.max() > 255:
            raise ValueError(f"{image.dtype} image values must lie in 0..255, got {image.min()}..{image.max()}")
        return image.astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        if not (np.isfinite(image).all() and image.min() >= 0.0 and image.max() <= 1.0):
            raise ValueError("float images must hold finite values in [0, 1]")
        return np.round(image * 255.0).astype(np.uint8)
    raise ValueError(f"unsupported image dtype {image.dtype}")


#: Smallest side of the network input (the network downsamples 32×).
MIN_NETWORK_SIDE = 32


def network_size(height: int, width: int, short_side: int = SHORT_SIDE,
                 max_long_side: int | None = None) -> tuple[int, int]:
    """(height, width) after scaling the short side to ``short_side``, truncated like the official code.

    With ``max_long_side`` the scale is lowered so that the long side is at most that (a very
    elongated image is not blown up to gigapixels); each side stays at least ``MIN_NETWORK_SIDE`` (or ``short_side`` when smaller).
    """
    scale = short_side / min(height, width)
    if max_long_side is not None:
        scale = min(scale, max_long_side / max(height, width))
    floor = min(MIN_NETWORK_SIDE, short_side)
    return max(floor, int(height * scale)), max(floor, int(width * scale))


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (cv2 INTER_LINEAR) resize of an H×W×C image to ``size`` = (height, width)."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def scale_clicks(clicks: Sequence[Click], src: tuple[int, int], dst: tuple[int, int]) -> list[Click]:
    """Map clicks from an image of size ``src`` to ``dst`` (both (height, width)), truncating."""
    sy, sx = dst[0] / src[0], dst[1] / src[1]
    return [c.scaled(sx, sy) for c in clicks]


def resize_prob(prob: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bring a float probability map back to ``size`` = (height, width) with cv2 bilinear."""
    height, width = size
    prob = np.asarray(prob, dtype=np.float32)
    if prob.shape == (height, width):
        return prob
    return cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class Crop:
    """A zoom-in region ``[y0, y1) × [x0, x1)`` of an image of size ``height × width``."""

    x0: int
    y0: int
    x1: int
    y1: int
    height: int
    width: int

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the crop."""
        return self.y1 - self.y0, self.x1 - self.x0

    def image(self, image: np.ndarray) -> np.ndarray:
        """The crop of an image or mask (H×W or H×W×C)."""
        return image[self.y0:self.y1, self.x0:self.x1]

    def clicks(self, clicks: Sequence[Click]) -> list[Click]:
        """Clicks in crop coordinates."""
        return [Click(c.x - self.x0, c.y - self.y0, c.positive) for c in clicks]

    def paste(self, prob: np.ndarray) -> np.ndarray:
        """Inverse transform: a crop-sized map placed into a zero float32 map of the full image."""
        if prob.shape != self.size:
            raise ValueError(f"map of shape {prob.shape} does not fit a crop of size {self.size}")
        full = np.zeros((self.height, self.width), dtype=np.float32)
        full[self.y0:self.y1, self.x0:self.x1] = prob
        return full


def zoom_crop(clicks: Sequence[Click], prev_mask: np.ndarray | None, height: int, width: int,
              expansion: float = 1.4, min_size: int = 200) -> Crop | None:
    """The zoom-in region: the box around all clicks and the previous mask, enlarged and clamped.

    The tight box around the clicks and the foreground (non-zero) of ``prev_mask`` is scaled
    by ``expansion`` about its centre, grown to at least ``min_size`` pixels per side, and
    clamped to the image. Every click therefore lies inside the crop.

    Returns:
        The crop, or ``None`` when it would cover the whole image (nothing to zoom into).
    """
    xs = [int(c.x) for c in clicks]
    ys = [int(c.y) for c in clicks]
    if prev_mask is not None:
        rows = np.flatnonzero(np.asarray(prev_mask).any(axis=1))
        cols = np.flatnonzero(np.asarray(prev_mask).any(axis=0))
        if rows.size:
            ys += [int(rows[0]), int(rows[-1])]
            xs += [int(cols[0]), int(cols[-1])]
    x0, x1 = _expand(min(xs), max(xs), expansion, min_size, width)
    y0, y1 = _expand(min(ys), max(ys), expansion, min_size, height)
    if (x0, y0, x1, y1) == (0, 0, width, height):
        return None
    return Crop(x0, y0, x1, y1, height, width)


def _expand(lo: int, hi: int, expansion: float, min_size: int, limit: int) -> tuple[int, int]:
    """Half-open interval around pixels ``lo..hi`` scaled by ``expansion``, ≥ ``min_size``, within [0, limit)."""
    centre = 0.5 * (lo + hi + 1)
    extent = max(expansion * (hi - lo + 1), min_size)
    start = max(0, int(round(centre - 0.5 * extent)))
    stop = min(limit, int(round(centre + 0.5 * extent)))
    return start, stop
