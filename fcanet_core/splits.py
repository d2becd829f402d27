"""A validation split carved from the training pool, and its removal from training.

The split is an ``index.csv`` folder whose image and mask paths point into the training folders
(relative to the split's own folder), so :func:`fcanet_core.data.datasets.load_samples` and every
evaluation command read it like any dataset. Training removes each sample whose *image* file is
in a held-out split, so no object of a held-out image is ever trained on (multi-object COCO images
are held out whole).

CLI (how ``splits/val`` was made; deterministic for a given seed and pool)::

    python -m fcanet_core.splits --out splits/val --pick ../shared/data/train/coco:300 \
        --pick ../shared/data/train/duts:200 [--seed 2026]
"""
from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from .cli import run_action
from .data.datasets import Sample, load_samples

logger = logging.getLogger(__name__)


def carve(folder: str | Path, instances: int, rng: np.random.Generator) -> list[Sample]:
    """Whole images of ``folder``, drawn at random, until they hold at least ``instances`` objects."""
    by_image: dict[Path, list[Sample]] = defaultdict(list)
    for sample in load_samples(folder):
        by_image[sample.image_path].append(sample)
    images = sorted(by_image)
    picked: list[Sample] = []
    for k in rng.permutation(len(images)):
        if len(picked) >= instances:
            break
        picked.extend(by_image[images[k]])
    if len(picked) < instances:
        raise ValueError(f"{folder} holds only {len(picked)} instances, {instances} asked for")
    return picked


def write_split(samples: Sequence[Sample], out: str | Path) -> Path:
    """Write ``out/index.csv`` listing ``samples`` with paths relative to ``out``; returns its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = out / "index.csv"
    with open(index, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "mask"])
        for sample in sorted(samples, key=lambda s: (str(s.image_path), str(s.mask_path))):
            writer.writerow([os.path.relpath(sample.image_path, out), os.path.relpath(sample.mask_path, out)])
    return index


def held_out_images(split_dirs: Sequence[str | Path]) -> set[Path]:
    """The resolved image files of the given split folders."""
    return {s.image_path.resolve() for d in split_dirs for s in load_samples(d)}


def without_held_out(samples: Sequence[Sample], split_dirs: Sequence[str | Path]) -> list[Sample]:
    """``samples`` minus those whose image is in one of ``split_dirs`` (kept in order)."""
    if not split_dirs:
        return list(samples)
    held = held_out_images(split_dirs)
    kept = [s for s in samples if s.image_path.resolve() not in held]
    logger.info("held out %d of %d training samples (%d images of %d split folder(s))",
                len(samples) - len(kept), len(samples), len(held), len(split_dirs))
    return kept


def _pick(text: str) -> tuple[str, int]:
    folder, _, count = text.rpartition(":")
    if not folder or not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"expected FOLDER:COUNT, got {text!r}")
    return folder, int(count)


def main(argv: Sequence[str] | None = None) -> int:
    """Carve a split: ``--pick FOLDER:N`` draws whole images of FOLDER until N objects."""
    parser = argparse.ArgumentParser(prog="python -m fcanet_core.splits", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="split folder to write (index.csv)")
    parser.add_argument("--pick", type=_pick, action="append", required=True, help="FOLDER:INSTANCES")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)

    def action() -> str:
        rng = np.random.default_rng(args.seed)
        samples = [s for folder, count in args.pick for s in carve(folder, count, rng)]
        index = write_split(samples, args.out)
        return f"{index}: {len(samples)} instances from {len({s.image_path for s in samples})} images"

    return run_action(action, logger)


if __name__ == "__main__":
    sys.exit(main())
