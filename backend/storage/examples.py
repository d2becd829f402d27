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

The entries come from :class:`~backend.labelstudio.annotations.AnnotationRecord` and the instances that
:func:`backend.labelstudio.masks.decode_regions` decoded; :meth:`ExampleStore.put` runs in a job.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from fcanet_core import Click
from fcanet_core.data.datasets import Sample, decode_with_ignore

from ..common.locks import FileLock
from ..labelstudio.annotations import AnnotationRecord, is_project_key, project_key
from ..labelstudio.masks import Instance

logger = logging.getLogger(__name__)

ENTRY_FILE = "entry.json"
IMAGE_FILE = "image.png"
#: Temporary and aside folders older than this are left-overs of a crashed writer.
_STALE_S = 3600.0


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
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and is_project_key(p.name))

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
