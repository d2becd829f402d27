"""The store of corrected masks collected from Label Studio annotations, per project.

One annotation becomes one *entry* (a folder) holding a copy of the task image and one mask per
brush or polygon region; each region is one *example* (an object instance) for fine-tuning and
evaluation. Layout::

    MODEL_DIR/examples/<project>/<annotation id>/image.png
    MODEL_DIR/examples/<project>/<annotation id>/mask-<k>.png      0 = background, 255 = object
    MODEL_DIR/examples/<project>/<annotation id>/entry.json        label, region ids, clicks, source

An entry is assembled under a hidden temporary name and renamed into place (replacing an older
version of the same annotation through a hidden aside name), so a reader sees the old entry, no
entry, or the new entry, never a half-written one.

Parsing a webhook payload (:func:`parse_annotation_events`, :func:`deleted_annotation_ids`) is
cheap and runs in the web request; decoding masks (:func:`decode_regions`) and writing
(:meth:`ExampleStore.put`) run in a job.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
from PIL import Image

from fcanet_core import Click
from fcanet_core.datasets import Sample, decode_with_ignore

from .locks import FileLock
from .prompts import PromptError, is_positive

logger = logging.getLogger(__name__)

MASK_TYPES = ("brushlabels", "polygonlabels")
CLICK_TYPE = "keypointlabels"
ENTRY_FILE = "entry.json"
IMAGE_FILE = "image.png"
_PROJECT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Temporary and aside folders older than this are left-overs of a crashed writer.
_STALE_S = 3600.0


# --------------------------------------------------------------------------- payload parsing

@dataclass(frozen=True)
class AnnotationRecord:
    """What a job needs from an annotation webhook: ids, the image reference and the mask regions.

    ``regions`` keeps the brush/polygon results and the keypoint results (our prompts) only.
    """

    project: str
    annotation_id: int
    task_id: int | None
    image_url: str
    updated_at: str
    regions: tuple[dict, ...] = field(default=())

    @property
    def has_masks(self) -> bool:
        """True when at least one brush or polygon region is present."""
        return any(r.get("type") in MASK_TYPES for r in self.regions)


def project_key(value: Any) -> str:
    """A project id as a safe folder name; raises ``ValueError`` for anything else."""
    key = str(value.get("id") if isinstance(value, dict) else value)
    if not _PROJECT_RE.match(key):
        raise ValueError(f"invalid project id {value!r}")
    return key


def _int_id(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise ValueError(f"{what} must be a non-negative integer id, got {value!r}")
    return int(value)


def image_data_key(label_config: str | None, to_name: str, task_data: dict) -> str:
    """The ``task.data`` key holding the image of the ``<Image name=to_name value="$key">`` tag."""
    if label_config:
        try:
            root = ET.fromstring(label_config)
        except ET.ParseError as exc:
            raise ValueError(f"project label_config is not valid XML: {exc}") from None
        for tag in root.iter():
            if tag.get("name") == to_name and tag.get("value", "").startswith("$"):
                return tag.get("value")[1:]
    if to_name in task_data:
        return to_name
    if len(task_data) == 1:
        return next(iter(task_data))
    raise ValueError(f"cannot tell which task data field holds the image {to_name!r}: {sorted(task_data)}")


def _record(project: str, annotation: dict, task: dict, label_config: str | None) -> AnnotationRecord:
    if not isinstance(annotation, dict) or not isinstance(task, dict):
        raise ValueError("annotation and task must be JSON objects")
    results = annotation.get("result") or []
    if not isinstance(results, list):
        raise ValueError("annotation.result must be a list")
    regions = tuple(r for r in results if isinstance(r, dict) and r.get("type") in (*MASK_TYPES, CLICK_TYPE))
    for region in regions:
        if not isinstance(region.get("value", {}), dict):
            raise ValueError(f"region {region.get('id')!r}: value must be an object")
    image_url = ""
    masks = [r for r in regions if r.get("type") in MASK_TYPES]
    if masks and not annotation.get("was_cancelled"):
        data = task.get("data")
        if not isinstance(data, dict):
            raise ValueError("task.data must be a JSON object")
        image_url = data.get(image_data_key(label_config, str(masks[0].get("to_name", "")), data))
        if not isinstance(image_url, str) or not image_url:
            raise ValueError("the task has no image URL for the annotated image")
    else:
        regions = ()
    return AnnotationRecord(
        project=project,
        annotation_id=_int_id(annotation.get("id"), "annotation.id"),
        task_id=_int_id(task["id"], "task.id") if task.get("id") is not None else None,
        image_url=image_url,
        updated_at=str(annotation.get("updated_at") or ""),
        regions=regions,
    )


def parse_annotation_events(action: str, payload: dict) -> list[AnnotationRecord]:
    """Records from an ``ANNOTATION_CREATED``/``ANNOTATION_UPDATED`` (one) or ``ANNOTATIONS_CREATED``
    (several) payload. Cancelled (skipped) annotations come back without regions."""
    if not isinstance(payload, dict):
        raise ValueError("webhook payload must be a JSON object")
    project = payload.get("project")
    if not isinstance(project, dict):
        raise ValueError(f"{action} payload lacks the project object")
    key = project_key(project)
    config = project.get("label_config") if isinstance(project.get("label_config"), str) else None
    annotations, tasks = payload.get("annotation"), payload.get("task")
    if action == "ANNOTATIONS_CREATED":
        annotations = annotations if isinstance(annotations, list) else []
        by_id = {t.get("id"): t for t in (tasks if isinstance(tasks, list) else []) if isinstance(t, dict)}
        return [_record(key, a, by_id.get(a.get("task"), {}), config) for a in annotations]
    if not isinstance(annotations, dict):
        raise ValueError(f"{action} payload lacks the annotation object")
    return [_record(key, annotations, tasks if isinstance(tasks, dict) else {}, config)]


def deleted_annotation_ids(action: str, payload: dict) -> tuple[str, list[int]]:
    """``(project, annotation ids)`` of an ``ANNOTATION_DELETED`` or ``ANNOTATIONS_DELETED`` payload."""
    if not isinstance(payload, dict) or not isinstance(payload.get("project"), dict):
        raise ValueError(f"{action} payload lacks the project object")
    items = payload.get("annotations") if action == "ANNOTATIONS_DELETED" else [payload.get("annotation")]
    if not isinstance(items, list):
        raise ValueError(f"{action} payload lacks the deleted annotations")
    ids = [_int_id(item.get("id") if isinstance(item, dict) else item, "annotation id") for item in items]
    return project_key(payload["project"]), ids


# --------------------------------------------------------------------------- mask decoding

@dataclass(frozen=True)
class Instance:
    """One object of an annotation: its mask (uint8 0/1), label, region id and prompt clicks."""

    region_id: str
    label: str
    mask: np.ndarray
    clicks: tuple[Click, ...] = ()


def _label(region: dict) -> str:
    labels = (region.get("value") or {}).get(region.get("type"), [])
    return str(labels[0]) if labels else ""


def _region_size(region: dict, height: int, width: int) -> None:
    size = (region.get("original_height"), region.get("original_width"))
    if size != (height, width):
        raise ValueError(f"region {region.get('id')!r} is for a {size[1]}×{size[0]} image, "
                         f"the task image is {width}×{height}")


def rle_length(rle: Any) -> int:
    """The number of values a Label Studio brush RLE declares (its first 32 bits), read without
    decoding; ``ValueError`` unless ``rle`` is a list of byte values with a header."""
    if not isinstance(rle, list) or len(rle) < 5 or not all(isinstance(b, int) and 0 <= b <= 255 for b in rle):
        raise ValueError("the RLE must be a list of byte values (0-255)")
    return int.from_bytes(bytes(rle[:4]), "big")


def decode_mask(region: dict, height: int, width: int) -> np.ndarray:
    """A brush (Label Studio RLE) or polygon (percent points) region as a uint8 0/1 H×W mask.

    The RLE's declared length is checked against the image before anything is decoded, so a
    region cannot make the decoder allocate more than the image's own RGBA size.
    """
    from label_studio_sdk.converter.brush import decode_rle

    _region_size(region, height, width)
    value = region.get("value") or {}
    if region.get("type") == "brushlabels":
        if value.get("format", "rle") != "rle" or not isinstance(value.get("rle"), list):
            raise ValueError(f"brush region {region.get('id')!r} has no RLE")
        declared = rle_length(value["rle"])
        if declared != height * width * 4:
            raise ValueError(f"brush region {region.get('id')!r} declares {declared} values, "
                             f"expected {height * width * 4} for {width}×{height} RGBA")
        try:
            flat = decode_rle(value["rle"])
        except (ValueError, IndexError):
            raise ValueError(f"brush region {region.get('id')!r} has a truncated RLE") from None
        return (flat.reshape(height, width, 4)[..., 3] >= 128).astype(np.uint8)
    points = np.asarray(value.get("points") or [], dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < 3 or points.shape[1] != 2:
        raise ValueError(f"polygon region {region.get('id')!r} needs at least 3 [x%, y%] points")
    pixels = np.round(points / 100.0 * [width, height]).astype(np.int32)
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(mask, [pixels], 1)
    return mask


def _click(region: dict, height: int, width: int) -> Click | None:
    """A keypoint region as a click (polarity as for prompts); ``None`` when it is malformed."""
    value = region.get("value") or {}
    try:
        x = float(value["x"]) / 100.0 * width
        y = float(value["y"]) / 100.0 * height
        positive = is_positive(region)
    except (KeyError, TypeError, ValueError, PromptError):
        return None
    return Click(min(max(x, 0.0), width - 1.0), min(max(y, 0.0), height - 1.0), positive)


def decode_regions(regions: Sequence[dict], height: int, width: int) -> list[Instance]:
    """Decode every mask region; keypoints of the same label become the instance's clicks when the
    first positive one lies on its mask (the prompts that produced it)."""
    clicks_by_label: dict[str, list[Click]] = {}
    for region in regions:
        if region.get("type") == CLICK_TYPE:
            click = _click(region, height, width)
            if click is not None:
                clicks_by_label.setdefault(_label(region), []).append(click)
    instances = []
    for region in regions:
        if region.get("type") not in MASK_TYPES:
            continue
        mask = decode_mask(region, height, width)
        if not mask.any():
            logger.warning("region %r has an empty mask: skipped", region.get("id"))
            continue
        label = _label(region)
        clicks = clicks_by_label.get(label, [])
        first = next((c for c in clicks if c.positive), None)
        own = tuple(clicks) if first is not None and mask[int(first.y), int(first.x)] else ()
        instances.append(Instance(str(region.get("id", len(instances))), label, mask, own))
    return instances


# --------------------------------------------------------------------------- the store

@dataclass(frozen=True)
class Example:
    """One stored object instance: ``key`` is ``<annotation id>-<k>``; ``revision`` changes with content."""

    project: str
    annotation_id: int
    index: int
    label: str
    image_path: Path
    mask_path: Path
    revision: str
    clicks: tuple[Click, ...] = ()
    task_id: int | None = None

    @property
    def key(self) -> str:
        """Stable identifier of the instance within its project."""
        return f"{self.annotation_id}-{self.index}"

    def sample(self) -> Sample:
        """The example as an ``fcanet_core`` dataset sample (gt 0/1)."""
        return Sample(self.key, self.image_path, self.mask_path, decode_with_ignore)


def _write_png(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        Image.fromarray(array).save(f, format="PNG")
        f.flush()
        os.fsync(f.fileno())


class ExampleStore:
    """Examples of every project under ``root`` (normally ``MODEL_DIR/examples``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def project_dir(self, project: str) -> Path:
        """Folder of one project's entries."""
        return self.root / project_key(project)

    def projects(self) -> list[str]:
        """Projects that have a folder in the store."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _PROJECT_RE.match(p.name))

    @contextmanager
    def _locked(self, project: str) -> Iterator[Path]:
        folder = self.project_dir(project)
        with FileLock(folder / ".lock"):
            yield folder

    def _entry(self, folder: Path) -> dict | None:
        try:
            return json.loads((folder / ENTRY_FILE).read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def put(self, record: AnnotationRecord, image: np.ndarray, instances: Sequence[Instance]) -> list[Example]:
        """Store (or replace) the entry of ``record``'s annotation atomically.

        An update whose ``updated_at`` is older than the stored entry's is ignored, so jobs that
        finish out of order cannot bring back an old version. With no instance the entry is removed.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be RGB uint8 H×W×3, got {image.dtype} {image.shape}")
        for inst in instances:
            if inst.mask.shape != image.shape[:2]:
                raise ValueError(f"mask of region {inst.region_id!r} is {inst.mask.shape}, image is {image.shape[:2]}")
        if not instances:
            self.delete(record.project, [record.annotation_id])
            return []
        with self._locked(record.project) as folder:
            self._sweep(folder)
            final = folder / str(record.annotation_id)
            old = self._entry(final)
            if old and record.updated_at and old.get("updated_at", "") > record.updated_at:
                logger.info("annotation %s: stored version is newer, update ignored", record.annotation_id)
                return self.entry_examples(record.project, record.annotation_id)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{record.annotation_id}-", dir=folder))
            try:
                self._write_entry(tmp, record, image, instances)
                if final.exists():
                    aside = folder / f".old-{record.annotation_id}-{os.urandom(4).hex()}"
                    os.rename(final, aside)
                    os.rename(tmp, final)
                    shutil.rmtree(aside, ignore_errors=True)
                else:
                    os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        logger.info("project %s: stored annotation %s (%d instance(s))",
                    record.project, record.annotation_id, len(instances))
        return self.entry_examples(record.project, record.annotation_id)

    @staticmethod
    def _write_entry(folder: Path, record: AnnotationRecord, image: np.ndarray,
                     instances: Sequence[Instance]) -> None:
        _write_png(folder / IMAGE_FILE, image)
        digest = hashlib.sha1(record.image_url.encode())
        items = []
        for k, inst in enumerate(instances):
            mask = inst.mask.astype(np.uint8) * 255
            _write_png(folder / f"mask-{k}.png", mask)
            digest.update(mask.tobytes())
            digest.update(inst.label.encode())
            items.append({"mask": f"mask-{k}.png", "label": inst.label, "region_id": inst.region_id,
                          "clicks": [list(c.as_row()) for c in inst.clicks]})
        entry = {"annotation_id": record.annotation_id, "task_id": record.task_id,
                 "image_url": record.image_url, "updated_at": record.updated_at,
                 "stored_at": time.time(), "revision": digest.hexdigest()[:16],
                 "height": image.shape[0], "width": image.shape[1], "instances": items}
        with open(folder / ENTRY_FILE, "w", encoding="utf-8") as f:
            json.dump(entry, f, indent=1)
            f.flush()
            os.fsync(f.fileno())

    def _sweep(self, folder: Path) -> None:
        """Remove temporary and aside folders a crashed writer left behind."""
        cutoff = time.time() - _STALE_S
        for item in folder.glob(".[to][ml][pd]-*"):
            if item.is_dir() and item.stat().st_mtime < cutoff:
                shutil.rmtree(item, ignore_errors=True)

    def delete(self, project: str, annotation_ids: Sequence[int]) -> int:
        """Remove the entries of these annotations; returns how many existed."""
        removed = 0
        with self._locked(project) as folder:
            for ann in annotation_ids:
                final = folder / str(int(ann))
                if final.is_dir():
                    aside = folder / f".old-{int(ann)}-{os.urandom(4).hex()}"
                    os.rename(final, aside)
                    shutil.rmtree(aside, ignore_errors=True)
                    removed += 1
        if removed:
            logger.info("project %s: removed %d annotation(s)", project, removed)
        return removed

    def _examples_of(self, project: str, folder: Path) -> list[Example]:
        entry = self._entry(folder)
        if entry is None:
            return []
        return [Example(project=project, annotation_id=int(entry["annotation_id"]), index=k,
                        label=item["label"], image_path=folder / IMAGE_FILE, mask_path=folder / item["mask"],
                        revision=f"{entry['revision']}:{k}", task_id=entry.get("task_id"),
                        clicks=tuple(Click(x, y, bool(p)) for x, y, p in item["clicks"]))
                for k, item in enumerate(entry["instances"])]

    def entry_examples(self, project: str, annotation_id: int) -> list[Example]:
        """The examples of one annotation (empty when it is not stored)."""
        return self._examples_of(project_key(project), self.project_dir(project) / str(int(annotation_id)))

    def examples(self, project: str) -> list[Example]:
        """Every example of a project, ordered by annotation id and instance."""
        folder = self.project_dir(project)
        if not folder.is_dir():
            return []
        entries = sorted((p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
        return [ex for p in entries for ex in self._examples_of(project_key(project), p)]
