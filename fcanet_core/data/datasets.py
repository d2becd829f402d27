"""Image/mask pairs for evaluation and training, from an ``index.csv`` folder or an official layout.

Supported folders (detected from their content):

- ``index.csv`` with columns ``image,mask`` (paths relative to the folder); mask 0 = background,
  255 = object, 128 = ignore.
- GrabCut: ``data_GT/*`` images, ``boundary_GT/<stem>.*`` masks; 128 = ignore.
- Berkeley: ``images/*``, ``masks/<stem>.*``; first channel, object where ≥ 128.
- VOC2012: ``JPEGImages/<id>.jpg``, ``SegmentationObject/<id>.png`` (palette indices), ids from
  ``ImageSets/Segmentation/val.txt`` (every mask when absent); one sample per instance index,
  255 = ignore.
- DAVIS (a folder named ``DAVIS``): ``img/*``, ``gt/<stem>.*``; object where non-zero.
- any other folder with ``img/*`` and ``gt/<stem>.*``; object where ≥ 128.

Ground truth is uint8 H×W with 0 = background, 1 = object, 255 = ignore (:data:`IGNORE`).
Samples come in a deterministic sorted order.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from ..evaluation.robot import IGNORE

logger = logging.getLogger(__name__)

#: Turns a raw mask array (H×W, as stored) into ground truth 0/1/255.
GtDecoder = Callable[[np.ndarray], np.ndarray]


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as RGB uint8 H×W×3 (greyscale, palette and RGBA images are converted)."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask as stored (palette indices stay indices), reduced to its first channel, H×W."""
    with Image.open(path) as img:
        arr = np.asarray(img)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    return arr[..., 0] if arr.ndim == 3 else arr


def decode_with_ignore(raw: np.ndarray) -> np.ndarray:
    """0 = background, 255 = object, 128 = ignore (``index.csv`` and GrabCut): object where > 128."""
    gt = (raw >= 128).astype(np.uint8)
    gt[raw == 128] = IGNORE
    return gt


def decode_threshold(raw: np.ndarray, threshold: int = 128) -> np.ndarray:
    """Object where the value is at least ``threshold``; no ignore pixels."""
    return (raw >= threshold).astype(np.uint8)


def decode_instance(raw: np.ndarray, instance: int) -> np.ndarray:
    """One instance of a VOC ``SegmentationObject`` mask; its 255 border is ignored."""
    gt = (raw == instance).astype(np.uint8)
    gt[raw == IGNORE] = IGNORE
    return gt


@dataclass(frozen=True)
class Sample:
    """One object instance: an image file and the mask file that outlines the object.

    ``image`` and ``gt`` are read from disk on each access, so long sample lists stay small.
    """

    name: str
    image_path: Path
    mask_path: Path
    decode: GtDecoder = decode_with_ignore

    @property
    def image(self) -> np.ndarray:
        """RGB uint8 H×W×3."""
        return read_image(self.image_path)

    @property
    def gt(self) -> np.ndarray:
        """uint8 H×W ground truth: 0 background, 1 object, 255 ignore."""
        return self.decode(read_mask(self.mask_path))

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """``(image, gt)``; raises ``ValueError`` when their sizes differ."""
        image, gt = self.image, self.gt
        if image.shape[:2] != gt.shape:
            raise ValueError(
                f"sample {self.name!r}: image {self.image_path} is {image.shape[1]}×{image.shape[0]} "
                f"but mask {self.mask_path} is {gt.shape[1]}×{gt.shape[0]}"
            )
        return image, gt


def _files(folder: Path) -> list[Path]:
    """Files named ``*.*`` in ``folder`` (dot files excluded), sorted like the official ``sorted(glob('*.*'))``."""
    return sorted(p for p in folder.glob("*.*") if p.is_file() and not p.name.startswith("."))


def _paired(image_dir: Path, mask_dir: Path, decode: GtDecoder) -> Iterator[Sample]:
    """One sample per image, its mask found by file stem in ``mask_dir``."""
    masks: dict[str, Path] = {}
    for mask_path in _files(mask_dir):
        masks.setdefault(mask_path.stem, mask_path)
    for image_path in _files(image_dir):
        mask_path = masks.get(image_path.stem)
        if mask_path is None:
            raise ValueError(f"no mask named {image_path.stem}.* in {mask_dir} for image {image_path}")
        yield Sample(image_path.stem, image_path, mask_path, decode)


def _index_csv(root: Path) -> Iterator[Sample]:
    """Samples listed in ``root/index.csv``, sorted by (image, mask)."""
    with open(root / "index.csv", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"image", "mask"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{root / 'index.csv'} lacks the column(s) {sorted(missing)}; need image,mask")
        rows = sorted((row["image"], row["mask"]) for row in reader)
    for image, mask in rows:
        yield Sample(Path(mask).stem, root / image, root / mask, decode_with_ignore)


def _voc(root: Path) -> Iterator[Sample]:
    """One sample per instance of each ``SegmentationObject`` mask of the val split."""
    split = root / "ImageSets" / "Segmentation" / "val.txt"
    mask_dir = root / "SegmentationObject"
    if split.is_file():
        ids = sorted({line.strip() for line in split.read_text().splitlines() if line.strip()})
    else:
        ids = [p.stem for p in _files(mask_dir) if p.suffix.lower() == ".png"]
    for image_id in ids:
        mask_path = mask_dir / f"{image_id}.png"
        if not mask_path.is_file():
            raise ValueError(f"VOC id {image_id!r} has no mask {mask_path}")
        for value in np.unique(read_mask(mask_path)):
            if value not in (0, IGNORE):
                yield Sample(f"{image_id}#{value}", root / "JPEGImages" / f"{image_id}.jpg", mask_path,
                             partial(decode_instance, instance=int(value)))


def _listing(root: Path) -> tuple[str, Iterator[Sample]] | None:
    """The layout name of ``root`` and its samples (lazily), or ``None`` if no layout matches."""
    def has(*names: str) -> bool:
        return all((root / n).is_dir() for n in names)

    if (root / "index.csv").is_file():
        return "index.csv", _index_csv(root)
    if has("data_GT", "boundary_GT"):
        return "GrabCut", _paired(root / "data_GT", root / "boundary_GT", decode_with_ignore)
    if has("images", "masks"):
        return "Berkeley", _paired(root / "images", root / "masks", decode_threshold)
    if has("JPEGImages", "SegmentationObject"):
        return "VOC2012", _voc(root)
    if has("img", "gt"):
        if root.name.lower() == "davis":
            return "DAVIS", _paired(root / "img", root / "gt", partial(decode_threshold, threshold=1))
        return "img/gt", _paired(root / "img", root / "gt", decode_threshold)
    return None


def _open(path: str | Path) -> tuple[str, Iterator[Sample]]:
    """Layout name and lazy sample listing of a dataset folder; ``ValueError`` if it is none."""
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"dataset folder not found: {root}")
    found = _listing(root)
    if found is None:
        raise ValueError(
            f"{root} is not a dataset folder: expected index.csv, data_GT/+boundary_GT/ (GrabCut), "
            "images/+masks/ (Berkeley), JPEGImages/+SegmentationObject/ (VOC2012) or img/+gt/"
        )
    return found


def detect_layout(path: str | Path) -> str:
    """Layout of a dataset folder: ``index.csv``, ``GrabCut``, ``Berkeley``, ``VOC2012``, ``DAVIS``
    or ``img/gt``; raises ``ValueError`` when the folder matches none."""
    return _open(path)[0]


def load_samples(path: str | Path, limit: int | None = None, every: int = 1) -> list[Sample]:
    """List the samples of a dataset folder in deterministic sorted order.

    Args:
        path: a folder with ``index.csv`` or in one of the official layouts (see module docstring).
        limit: keep only the first ``limit`` samples (instances, for VOC) of those taken.
        every: take every ``every``-th sample (an evenly spread subset), then apply ``limit``.

    Returns:
        The samples; their images and masks are read on access.

    Raises:
        ValueError: unknown layout, missing masks, bad ``limit`` or an empty dataset.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of samples, got {limit}")
    if every < 1:
        raise ValueError(f"every must be at least 1, got {every}")
    layout, listing = _open(path)
    samples = list(islice(islice(listing, None, None, every), limit))
    if not samples:
        raise ValueError(f"dataset folder {path} ({layout} layout) holds no samples")
    logger.info("%s: %d samples (%s layout)", path, len(samples), layout)
    return samples
