"""Training examples: object crops with simulated (or iterative-training) clicks.

Each example is a *view* of one dataset sample: the image scaled so its short side is
``short_side`` × a random factor in ``scale_range``, a ``crop``×``crop`` window containing a
uniformly chosen object pixel, and an optional horizontal flip. Images smaller than the crop are
padded (image 0, mask ignore). Samples are read with :func:`fcanet_core.data.datasets.load_samples`
(``index.csv`` folders, 128 = ignore); the training images are small (long side ≤ 512 px) and
decode in a few milliseconds, so they are read on demand rather than cached.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import cv2
import numpy as np

from ..clicks import Click, encode_clicks
from ..data.datasets import Sample, load_samples
from ..evaluation.robot import IGNORE
from ..splits import without_held_out
from .sampling import ItisMemory, simulate_clicks

logger = logging.getLogger(__name__)


class View(NamedTuple):
    """Where a training crop comes from: scale factor, crop offset in the scaled image, flip."""

    scale: float
    y0: int
    x0: int
    flip: bool


@dataclass(frozen=True)
class Example:
    """One training example at crop resolution."""

    index: int
    image: np.ndarray  # uint8 C×C×3 RGB
    gt: np.ndarray  # uint8 C×C, 0/1/255
    clicks: list[Click]
    view: View


@dataclass(frozen=True)
class CropSpec:
    """Scale and crop settings of the training views."""

    crop: int = 256
    short_side: int = 352
    scale_range: tuple[float, float] = (0.7, 1.4)
    flip: bool = True


def load_training_samples(folders: Sequence[str | Path], holdout: Sequence[str | Path] = ()) -> list[Sample]:
    """All samples of the given dataset folders in a deterministic order, minus the images of the
    ``holdout`` split folders (see :mod:`fcanet_core.splits`)."""
    if not folders:
        raise ValueError("no training folders given")
    samples: list[Sample] = []
    for folder in folders:
        samples.extend(load_samples(folder))
    samples = without_held_out(samples, holdout)
    logger.info("training on %d samples from %d folder(s)", len(samples), len(folders))
    return samples


def _scaled_size(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def _resize_pad(arr: np.ndarray, scale: float, crop: int, interpolation: int, fill: int) -> np.ndarray:
    """Scale ``arr`` by ``scale`` and pad it bottom/right with ``fill`` to at least ``crop`` per side."""
    h, w = _scaled_size(arr.shape[:2], scale)
    arr = cv2.resize(arr, (w, h), interpolation=interpolation)
    pad = ((0, max(0, crop - h)), (0, max(0, crop - w))) + ((0, 0),) * (arr.ndim - 2)
    return np.pad(arr, pad, constant_values=fill)


def random_view(gt: np.ndarray, spec: CropSpec, rng: np.random.Generator) -> View:
    """A random view of a sample whose ground truth is ``gt``: the crop holds at least one object pixel."""
    scale = spec.short_side / min(gt.shape) * rng.uniform(*spec.scale_range)
    scaled = _resize_pad(gt, scale, spec.crop, cv2.INTER_NEAREST, IGNORE)
    ys, xs = np.nonzero(scaled == 1)
    if ys.size == 0:
        raise ValueError("the mask has no object pixel at this scale: cannot make a training crop")
    k = int(rng.integers(ys.size))
    y, x = int(ys[k]), int(xs[k])
    h, w = scaled.shape
    y0 = int(rng.integers(max(0, y - spec.crop + 1), min(y, h - spec.crop) + 1))
    x0 = int(rng.integers(max(0, x - spec.crop + 1), min(x, w - spec.crop) + 1))
    flip = bool(spec.flip and rng.random() < 0.5)
    return View(float(scale), y0, x0, flip)


def render_view(image: np.ndarray, gt: np.ndarray, view: View, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """The crop of ``view``: (image C×C×3, gt C×C)."""
    image = _resize_pad(image, view.scale, crop, cv2.INTER_LINEAR, 0)
    gt = _resize_pad(gt, view.scale, crop, cv2.INTER_NEAREST, IGNORE)
    window = (slice(view.y0, view.y0 + crop), slice(view.x0, view.x0 + crop))
    image, gt = image[window], gt[window]
    if view.flip:
        image, gt = image[:, ::-1], gt[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(gt)


def make_example(samples: Sequence[Sample], index: int, spec: CropSpec, rng: np.random.Generator,
                 memory: ItisMemory | None = None) -> Example:
    """A training example for sample ``index``: the remembered ITIS view and clicks, or fresh ones."""
    image, gt = samples[index].load()
    recalled = memory.recall(index, rng) if memory is not None else None
    view = View(*recalled[0]) if recalled is not None else random_view(gt, spec, rng)
    crop_image, crop_gt = render_view(image, gt, view, spec.crop)
    clicks = recalled[1] if recalled is not None else simulate_clicks(crop_gt, rng)
    return Example(index, crop_image, crop_gt, clicks, view)


def collate(examples: Sequence[Example]) -> dict[str, np.ndarray]:
    """Stack examples into network inputs: image B×3×C×C float32 in [0, 1], gt and distance maps B×1×C×C."""
    images = np.stack([e.image for e in examples]).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    gts = np.stack([e.gt for e in examples])[:, None]
    maps = [encode_clicks(e.clicks, *e.gt.shape) for e in examples]
    pos, neg, first = (np.stack([m[i] for m in maps])[:, None] for i in range(3))
    return {"image": images, "gt": gts, "pos": pos, "neg": neg, "first": first}
