"""A downscaled, size-bounded copy of training folders, for moving a run to another machine.

``python -m fcanet_core.train_subset --from DIR [DIR ...] --to data_cache/train_small --max-mb 56``

Samples are drawn in a seeded random order, alternating between the source folders as their
share of samples says, until the byte budget is spent; each image is scaled so its short side is
at most ``--short-side`` pixels (JPEG, ``--quality``) and its mask likewise (PNG, nearest
neighbour, so 0/128/255 survive). The result is an ``index.csv`` folder that
:func:`fcanet_core.data.datasets.load_samples` reads.
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .cli import run_action
from .data.datasets import Sample, load_samples

logger = logging.getLogger(__name__)


def _downscale(img: Image.Image, short_side: int, resample: Image.Resampling) -> Image.Image:
    scale = short_side / min(img.size)
    if scale >= 1:
        return img
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), resample)


def _encode(sample: Sample, short_side: int, quality: int) -> tuple[bytes, bytes]:
    """(JPEG image, PNG mask) bytes of one sample, downscaled."""
    with Image.open(sample.image_path) as img:
        image = _downscale(img.convert("RGB"), short_side, Image.Resampling.BILINEAR)
    with Image.open(sample.mask_path) as raw:
        mask = _downscale(raw.convert("L"), short_side, Image.Resampling.NEAREST)
    if image.size != mask.size:
        raise ValueError(f"sample {sample.name!r}: image and mask sizes differ")
    jpeg, png = io.BytesIO(), io.BytesIO()
    image.save(jpeg, "JPEG", quality=quality)
    mask.save(png, "PNG", optimize=True)
    return jpeg.getvalue(), png.getvalue()


def _interleaved(folders: Sequence[list[Sample]], rng: np.random.Generator) -> list[tuple[int, Sample]]:
    """All samples as (folder number, sample), shuffled so every prefix keeps the folders' shares."""
    keyed = []
    for k, samples in enumerate(folders):
        order = rng.permutation(len(samples))
        keyed += [((rank + rng.random()) / len(samples), k, samples[i]) for rank, i in enumerate(order)]
    return [(k, s) for _, k, s in sorted(keyed, key=lambda t: t[0])]


def make_subset(sources: Sequence[str | Path], out_dir: str | Path, max_bytes: int, short_side: int = 320,
                quality: int = 85, seed: int = 0) -> int:
    """Write the subset to ``out_dir`` (which must not exist yet) and return its number of samples."""
    out = Path(out_dir)
    if out.exists():
        raise ValueError(f"{out} exists: choose a new folder")
    folders = [load_samples(src) for src in sources]
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    rows, spent = [], 0
    for n, (k, sample) in enumerate(_interleaved(folders, np.random.default_rng(seed))):
        jpeg, png = _encode(sample, short_side, quality)
        if spent + len(jpeg) + len(png) > max_bytes:
            break
        stem = f"{k}_{n:05d}_{sample.name}"
        (out / "images" / f"{stem}.jpg").write_bytes(jpeg)
        (out / "masks" / f"{stem}.png").write_bytes(png)
        rows.append((f"images/{stem}.jpg", f"masks/{stem}.png"))
        spent += len(jpeg) + len(png)
    with open(out / "index.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "mask"])
        writer.writerows(rows)
    logger.info("wrote %d samples (%.1f MB) to %s", len(rows), spent / 1e6, out)
    return len(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m fcanet_core.train_subset", description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="sources", nargs="+", required=True, help="training folders")
    parser.add_argument("--to", required=True, help="new folder to write")
    parser.add_argument("--max-mb", type=float, default=56.0, help="byte budget in MB (default 56)")
    parser.add_argument("--short-side", type=int, default=320, help="largest short side kept (default 320)")
    parser.add_argument("--quality", type=int, default=85, help="JPEG quality (default 85)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return run_action(lambda: make_subset(args.sources, args.to, int(args.max_mb * 1e6), args.short_side,
                                          args.quality, args.seed), logger)


if __name__ == "__main__":
    sys.exit(main())
