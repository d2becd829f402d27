"""Label Studio's brush RLE: the run-length format of ``brushlabels`` regions, both ways.

The format is thi.ng's ``rle-pack`` bit stream over the RGBA bytes of the image, row by row:
a 32-bit value count, the word size minus one (5 bits), four run-length field widths minus one
(4 bits each), then tokens. A token is a flag bit (1: a run of one repeated word, 0: literal
words), a 2-bit index into the four widths, the run length minus one in that many bits, then
one word (run) or that many words (literal). The stream is zero-padded to whole bytes.

:func:`mask_to_rle` writes exactly the bytes of ``label_studio_sdk.converter.brush.mask2rle``
(8-bit words, widths 3/4/8/16, a lone value as a one-word literal, runs longer than 65,536
split into pieces of the widest field, 1-8 padding bits); :func:`decode_rle` reads any word size
and widths, as Label Studio's own editor writes them.
"""
from __future__ import annotations

import numpy as np

_RUN_WIDTHS = (3, 4, 8, 16)  # run-length field widths mask_to_rle writes
_WORD_BITS = 8
_MAX_RUN = 1 << _RUN_WIDTHS[-1]


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run lengths, the value of each run of equal neighbours, and whether it is a piece of a run
    over 65,536 values (split into 65,536-value pieces and the rest)."""
    ends = np.append(np.flatnonzero(values[1:] != values[:-1]), values.size - 1)
    lengths = np.diff(np.append(-1, ends))
    pieces = (lengths + _MAX_RUN - 1) // _MAX_RUN
    run_values = np.repeat(values[ends], pieces)
    split = np.repeat(pieces > 1, pieces)
    starts = np.cumsum(pieces) - pieces  # first piece of each run
    last = np.arange(pieces.sum()) - np.repeat(starts, pieces) == np.repeat(pieces, pieces) - 1
    lengths = np.where(last, np.repeat(lengths - (pieces - 1) * _MAX_RUN, pieces), _MAX_RUN)
    return lengths, run_values, split


def _token_codes(lengths: np.ndarray, values: np.ndarray, split: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each run as one token: its bits as an integer (high bit first) and its bit count.

    The narrowest run-length field that holds the length, but the widest for every piece of a
    split run and a one-word literal for a lone value (the SDK's choices)."""
    width_index = np.searchsorted(np.array([1 << w for w in _RUN_WIDTHS]), lengths)
    width_index = np.where(split, len(_RUN_WIDTHS) - 1, width_index)
    widths = np.array(_RUN_WIDTHS)[width_index]
    single = (lengths == 1) & ~split
    width_index = np.where(single, 0, width_index)  # a lone value: literal token, width 3, length 0
    widths = np.where(single, _RUN_WIDTHS[0], widths)
    flag = (~single).astype(np.uint64)
    codes = flag
    codes = (codes << np.uint64(2)) | width_index.astype(np.uint64)
    codes = (codes << widths.astype(np.uint64)) | (lengths - 1).astype(np.uint64)
    codes = (codes << np.uint64(_WORD_BITS)) | values.astype(np.uint64)
    return codes, 1 + 2 + widths + _WORD_BITS


def _pack(codes: np.ndarray, bit_counts: np.ndarray) -> np.ndarray:
    """The low ``bit_counts[i]`` bits of each code, concatenated high bit first, as 0/1 bytes."""
    all_bits = np.unpackbits(codes.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1)
    keep = np.arange(64)[None, :] >= 64 - bit_counts[:, None]
    return all_bits[keep]


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """Label Studio brush RLE (byte values) of a 2-D uint8 mask, each pixel's value in all of RGBA.

    Raises:
        ValueError: the mask is not 2-D uint8.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"the mask must be a 2-D uint8 array, got {mask.ndim}-D {mask.dtype}")
    values = np.repeat(mask.ravel(), 4)
    header = (values.size, 32), (_WORD_BITS - 1, 5), *((w - 1, 4) for w in _RUN_WIDTHS)
    codes = [np.array([c for c, _ in header], dtype=np.uint64)]
    counts = [np.array([n for _, n in header])]
    if values.size:
        run_codes, run_counts = _token_codes(*_runs(values))
        codes.append(run_codes)
        counts.append(run_counts)
    bits = _pack(np.concatenate(codes), np.concatenate(counts))
    padding = 8 - bits.size % 8  # one to eight zero bits, as the SDK writes
    return np.packbits(np.append(bits, np.zeros(padding, dtype=np.uint8))).tolist()


class _BitReader:
    """Big-endian bit fields of a byte string, read in order."""

    def __init__(self, data: bytes) -> None:
        self.data = data + bytes(8)  # reads of up to 32 bits never index past the end
        self.size = len(data) * 8
        self.position = 0

    def read(self, bits: int) -> int:
        """The next ``bits`` bits (at most 32) as an unsigned integer; ``ValueError`` past the end."""
        if self.position + bits > self.size:
            raise ValueError("the RLE ends inside a token (truncated)")
        first = self.position >> 3
        window = int.from_bytes(self.data[first:first + 5], "big")
        value = (window >> (40 - (self.position & 7) - bits)) & ((1 << bits) - 1)
        self.position += bits
        return value


def decode_rle(rle: list[int] | bytes) -> np.ndarray:
    """The flat values of a Label Studio brush RLE (RGBA bytes for a brush region).

    Raises:
        ValueError: the stream is truncated or its runs overrun its declared length.
    """
    reader = _BitReader(bytes(rle))
    count = reader.read(32)
    word_bits = reader.read(5) + 1
    run_widths = [reader.read(4) + 1 for _ in range(4)]
    out = np.zeros(count, dtype=np.uint8 if word_bits <= 8 else np.uint16 if word_bits <= 16 else np.uint32)
    i = 0
    while i < count:
        repeated = reader.read(1)
        end = i + 1 + reader.read(run_widths[reader.read(2)])
        if end > count:
            raise ValueError(f"the RLE's runs overrun its declared {count} values")
        if repeated:
            out[i:end] = reader.read(word_bits)
        else:
            out[i:end] = [reader.read(word_bits) for _ in range(end - i)]
        i = end
    return out
