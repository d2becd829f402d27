"""Our brush RLE against Label Studio SDK's encoder and decoder (the reference implementation)."""
import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle as sdk_decode_rle
from label_studio_sdk.converter.brush import mask2rle as sdk_mask2rle

from backend.labelstudio.brush import decode_rle, mask_to_rle

RNG = np.random.default_rng(7)


def _rectangle() -> np.ndarray:
    mask = np.zeros((480, 640), np.uint8)
    mask[100:300, 50:400] = 255
    return mask


MASKS = {
    "one pixel": np.zeros((1, 1), np.uint8),
    "all set, runs over 65,536 values": np.full((300, 300), 255, np.uint8),
    "salt and pepper": (RNG.integers(0, 2, (37, 53)) * 255).astype(np.uint8),
    "every byte value": RNG.integers(0, 256, (20, 31)).astype(np.uint8),
    "rectangle": _rectangle(),
    "exact run boundaries": np.repeat(np.array([0, 255] * 4, np.uint8), [2, 4, 64, 16384, 16385, 1, 3, 5])[None, :],
}


@pytest.mark.parametrize("name", MASKS)
def test_encoding_is_byte_identical_to_the_sdk(name):
    mask = MASKS[name]
    assert mask_to_rle(mask) == [int(v) for v in sdk_mask2rle(mask)]


@pytest.mark.parametrize("name", MASKS)
def test_decoding_round_trips_and_agrees_with_the_sdk(name):
    mask = MASKS[name]
    rle = mask_to_rle(mask)
    flat = decode_rle(rle)
    assert flat.dtype == np.uint8
    np.testing.assert_array_equal(flat, np.repeat(mask.ravel(), 4))
    np.testing.assert_array_equal(flat, sdk_decode_rle(rle))


def test_decodes_other_word_sizes_and_run_widths():
    # 3 values, 4-bit words, run widths 2/2/2/2: a run of two 5s, then a literal 9.
    bits = f"{3:032b}" + f"{3:05b}" + "0001" * 4 + "1" + "00" + "01" + "0101" + "0" + "00" + "00" + "1001"
    bits += "0" * (-len(bits) % 8)
    rle = [int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)]
    np.testing.assert_array_equal(decode_rle(rle), [5, 5, 9])
    np.testing.assert_array_equal(sdk_decode_rle(rle), [5, 5, 9])


def test_truncated_or_overrunning_streams_are_value_errors():
    rle = mask_to_rle(_rectangle())
    with pytest.raises(ValueError, match="truncated"):
        decode_rle(rle[: len(rle) // 2])
    overrun = list(rle)
    overrun[2] -= 1  # declares 256 values fewer than the runs hold
    with pytest.raises(ValueError, match="overrun"):
        decode_rle(overrun)


def test_rejects_masks_that_are_not_2d_uint8():
    with pytest.raises(ValueError, match="2-D uint8"):
        mask_to_rle(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="2-D uint8"):
        mask_to_rle(np.zeros((4, 4), np.float32))
