"""Label Studio regions and records for the annotation, mask and example-store tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from label_studio_sdk.converter.brush import mask2rle

from backend.labelstudio.annotations import AnnotationRecord
from fcanet_core.data.datasets import load_samples


def load_horse(shared_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """A real image and its object mask (0/1), from the shared horse set."""
    sample = load_samples(shared_dir / "data" / "train" / "horses", limit=1)[0]
    image, gt = sample.load()
    return image, (gt == 1).astype(np.uint8)


def brush_region(mask: np.ndarray, label: str = "Object", region_id: str = "r1") -> dict:
    height, width = mask.shape
    return {"id": region_id, "from_name": "tag", "to_name": "image", "type": "brushlabels",
            "original_width": width, "original_height": height, "image_rotation": 0,
            "value": {"format": "rle", "rle": mask2rle(mask.astype(np.uint8) * 255), "brushlabels": [label]}}


def keypoint(x: float, y: float, width: int, height: int, positive: bool | None = True, label: str = "Object") -> dict:
    region = {"id": f"k{x}-{y}", "from_name": "tag2", "to_name": "image", "type": "keypointlabels",
              "original_width": width, "original_height": height,
              "value": {"x": 100.0 * x / width, "y": 100.0 * y / height, "keypointlabels": [label]}}
    if positive is not None:
        region["is_positive"] = positive
    return region


def record(project: str = "7", annotation_id: int = 3, regions: tuple = (), updated_at: str = "2026-01-01T00:00:00Z"):
    return AnnotationRecord(project, annotation_id, 11, "/data/upload/7/x.png", updated_at, tuple(regions))
