"""Binary-mask geometry with OpenCV: exact Euclidean distance transform and 4-connected components."""
from __future__ import annotations

import cv2
import numpy as np


def distance_to_background(mask: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance of each foreground pixel to the nearest background pixel (0 on background).

    The same as ``scipy.ndimage.distance_transform_edt(mask)`` up to float32 rounding (OpenCV's
    precise mask is the exact transform; squared distances are integers, so distinct distances stay
    distinct and equal ones equal, and comparisons with integer thresholds are unaffected). Pixels
    outside the image do not count as background: pad the mask to make the border count.

    Args:
        mask: H×W array, foreground where non-zero; it must hold at least one background pixel.

    Returns:
        float64 H×W distances.
    """
    binary = (np.asarray(mask) != 0).astype(np.uint8)
    return cv2.distanceTransform(binary, cv2.DIST_L2, cv2.DIST_MASK_PRECISE).astype(np.float64)


def four_connected_components(mask: np.ndarray) -> np.ndarray:
    """Label the 4-connected foreground components of ``mask`` (non-zero pixels) 1, 2, ...; background 0.

    4-connectivity is ``scipy.ndimage.label``'s default structure (and the official ``cv2.floodFill``'s
    default); components are numbered in row-major order of their first pixel.
    """
    binary = (np.asarray(mask) != 0).astype(np.uint8)
    _, labels = cv2.connectedComponents(binary, connectivity=4, ltype=cv2.CV_32S)
    return labels
