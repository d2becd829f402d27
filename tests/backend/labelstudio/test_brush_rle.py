"""The vectorised brush RLE gives the bytes of Label Studio's own encoder and decodes back to the mask."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle, mask2rle

from backend.labelstudio.brush_rle import mask_to_rle

_RNG = np.random.default_rng(0)
CASES = {
    "empty": np.zeros((5, 7), np.uint8),
    "full": np.full((300, 300), 255, np.uint8),                      # one run above 2^16 values
    "noise": (_RNG.random((40, 50)) > 0.5).astype(np.uint8) * 255,    # short runs of every width
    "blob-683x512": (cv2.GaussianBlur(_RNG.random((512, 683)).astype(np.float32), (0, 0), 30) > 0.5
                     ).astype(np.uint8) * 255,
    "long-runs": np.pad(np.full((200, 200), 255, np.uint8), ((0, 400), (0, 0))),
    "grey-values": _RNG.integers(0, 256, (3, 5)).astype(np.uint8),
    "one-pixel": np.full((1, 1), 255, np.uint8),
    "whole-byte-body": np.full((2, 2), 255, np.uint8),
}


@pytest.mark.parametrize("name", CASES)
def test_same_bytes_as_label_studio(name: str) -> None:
    mask = CASES[name]
    got = mask_to_rle(mask)
    assert got == [int(v) for v in mask2rle(mask)]
    rgba = np.asarray(decode_rle(got), np.uint8).reshape(*mask.shape, 4)
    assert np.array_equal(rgba[..., 3], mask)


def test_empty_array_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        mask_to_rle(np.zeros((0, 4), np.uint8))
