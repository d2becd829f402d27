"""The promotion gate: a deterministic held-out split, snapshots of the examples and NoC@85/90."""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from fcanet_core import Predictor
from fcanet_core.evaluate import evaluate

from ..config import Settings
from ..storage.examples import Example

logger = logging.getLogger(__name__)


def split_examples(examples: Sequence[Example], fraction: float) -> tuple[list[Example], list[Example]]:
    """Deterministic (train, held-out) split by annotation: an annotation is held out when the hash
    of its id falls below ``fraction``, so it stays on its side as the project grows. At least one
    annotation lands on each side when there are two or more."""
    def score(ann: int) -> float:
        return int(hashlib.sha1(str(ann).encode()).hexdigest()[:12], 16) / float(1 << 48)

    annotations = sorted({e.annotation_id for e in examples}, key=score)
    held = {a for a in annotations if score(a) < fraction}
    if not held and annotations:
        held = {annotations[0]}
    if len(held) == len(annotations) > 1:
        held.discard(annotations[-1])
    return [e for e in examples if e.annotation_id not in held], [e for e in examples if e.annotation_id in held]


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except FileNotFoundError:
        raise
    except OSError:  # another file system
        shutil.copyfile(src, dst)


def snapshot(examples: Sequence[Example], folder: Path) -> list[Example]:
    """Hard-link (or copy) the examples' files into ``folder`` with an ``index.csv``; returns those
    that were still there (an entry replaced meanwhile is left out)."""
    folder.mkdir(parents=True)
    rows, kept = ["image,mask"], []
    for ex in examples:
        image, mask = f"{ex.key}-image.png", f"{ex.key}-mask.png"
        try:
            _link_or_copy(ex.image_path, folder / image)
            _link_or_copy(ex.mask_path, folder / mask)
        except FileNotFoundError:
            logger.info("example changed while snapshotting; left for the next run", extra={"example": ex.key})
            continue
        rows.append(f"{image},{mask}")
        kept.append(ex)
    (folder / "index.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return kept


def not_worse(before: Mapping[str, float], after: Mapping[str, float]) -> bool:
    """The promotion rule: the candidate needs no more clicks than the current version at IoU 0.85
    and at 0.90 (mean NoC on the same held-out examples)."""
    return after["noc85"] <= before["noc85"] and after["noc90"] <= before["noc90"]


def evaluate_model(model: Any, samples: Sequence[Any], settings: Settings, device: str, max_clicks: int) -> dict:
    """NoC@85/90 with the robot user, predicting the way the backend serves (SIS, zoom-in, short side)."""
    predictor = Predictor(model, device=device, sis=settings.sis, zoom_in=settings.zoom_in,
                          short_side=settings.short_side)
    result = evaluate(predictor, samples, max_clicks)
    return {"n": result.n, "noc85": result.noc85, "noc90": result.noc90, "miou_1": result.miou_curve[0],
            "spc": result.spc}
