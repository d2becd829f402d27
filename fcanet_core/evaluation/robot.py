"""The standard robot user of interactive-segmentation benchmarks (as in the official FCA-Net evaluation)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from ..clicks import Click
from ..masks import distance_to_background

#: Mask value marking pixels that are neither clicked nor counted.
IGNORE = 255


def _error_distance(error: np.ndarray) -> np.ndarray:
    """Distance of each error pixel to the nearest correct pixel or the image border (0 elsewhere).

    The transform runs on the errors' bounding box padded by one pixel: every pixel outside the
    box is correct, and for an error pixel the nearest outside pixel is never closer than the
    nearest pixel of the padding ring (clamp it to the box), so the distances, and the first
    maximum in row-major order, equal those of the transform over the whole padded image.
    """
    distance = np.zeros(error.shape, dtype=np.float64)
    rows, cols = np.flatnonzero(error.any(axis=1)), np.flatnonzero(error.any(axis=0))
    if rows.size == 0:
        return distance
    box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    padded = np.pad(error[box], 1, mode="constant", constant_values=False)
    distance[box] = distance_to_background(padded)[1:-1, 1:-1]
    return distance


def next_click(pred: np.ndarray, gt: np.ndarray, clicks: Sequence[Click] = ()) -> Click:
    """The robot user's next click.

    The click goes to the interior-most point (largest distance to a correct pixel or the image
    border) of the larger error region: positive on a false negative, negative on a false
    positive; ties go negative, and among equal distances the first pixel in row-major order wins.
    Pixels already clicked are excluded.

    Args:
        pred: H×W current prediction, foreground where non-zero (all zeros before the first click).
        gt: H×W ground truth, 0 background, 1 object, 255 ignore.
        clicks: clicks made so far, in the same pixel coordinates.

    Returns:
        The next click, in integer pixel coordinates.
    """
    pred_fg = np.asarray(pred) > 0
    gt = np.asarray(gt)
    fn_dist = _error_distance((gt == 1) & ~pred_fg)
    fp_dist = _error_distance((gt == 0) & pred_fg)
    for c in clicks:
        fn_dist[int(c.y), int(c.x)] = 0
        fp_dist[int(c.y), int(c.x)] = 0
    positive = fn_dist.max() > fp_dist.max()
    dist = fn_dist if positive else fp_dist
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return Click(int(x), int(y), bool(positive))


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of a 0/1 prediction with a 0/1/255 ground truth, ignore pixels excluded from the union."""
    pred_fg = np.asarray(pred) > 0
    gt = np.asarray(gt)
    valid = gt != IGNORE
    obj = gt == 1
    union = ((pred_fg | obj) & valid).sum()
    inter = (pred_fg & obj).sum()
    return float(inter) / float(union) if union else 1.0
