"""The promotion gate's measurements: a deterministic held-out split, snapshots of the examples,
robot-user scores per example (mean IoU over the first clicks, NoC@85/90 beside) and the guard set
that travels with the bundled model. The rule itself is :mod:`backend.learning.evidence`."""
from __future__ import annotations

import hashlib
from dataclasses import asdict
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

from fcanet_core import Predictor
from fcanet_core.modeling.checkpoint import DEFAULT_CHECKPOINT
from fcanet_core.evaluate import evaluate

from ..config import LearningConfig, Settings
from ..storage.examples import Example
from ..common.gate_rule import GateRule
from .evidence import compare, decide, example_score

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


#: The forgetting guard bundled with the default model (``scripts/make_guard_set.py``).
BUNDLED_GUARD = DEFAULT_CHECKPOINT.parent / "guard"


def guard_dir(cfg: LearningConfig) -> Path:
    """The guard set's ``index.csv`` folder: ``GUARD_DIR`` or the bundled one."""
    return Path(cfg.guard_dir) if cfg.guard_dir else BUNDLED_GUARD


def evaluate_model(model: Any, samples: Sequence[Any], settings: Settings, device: str, max_clicks: int,
                   score_clicks: int = 1) -> dict:
    """Robot-user measurements, predicting the way the backend serves (SIS, zoom-in, short side).

    Returns:
        ``n``, ``noc85``, ``noc90`` (capped at ``max_clicks``), ``miou_1``, ``miou_k`` (mean IoU over
        the first ``score_clicks`` clicks), ``clicks`` (``score_clicks``), ``spc`` and ``scores``:
        each sample's mean IoU over its first ``score_clicks`` clicks, in the order of ``samples``.
    """
    predictor = Predictor(model, device=device, **settings.predictor_options())
    result = evaluate(predictor, samples, max_clicks)
    scores = [example_score(inst.ious, score_clicks) for inst in result.instances]
    return {"n": result.n, "noc85": result.noc85, "noc90": result.noc90, "miou_1": result.miou_curve[0],
            "miou_k": float(sum(scores) / len(scores)), "clicks": score_clicks, "spc": result.spc,
            "scores": scores}


def without_scores(measurement: dict) -> dict:
    """A measurement of :func:`evaluate_model` without its per-example scores, rounded for display."""
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in measurement.items() if k != "scores"}


def gate_evidence(rule: GateRule, project: tuple[dict, dict], guard: tuple[dict, dict], guard_set: dict) -> dict:
    """The decision and its evidence from (current, candidate) measurements of :func:`evaluate_model`
    on the project's held-out examples and on the guard set (``guard_set``: where it is, its baseline).

    Returns:
        ``promote``, ``verdict``, ``why``, ``rule``, ``project`` and ``guard`` (paired comparisons:
        n, both means, gain, bounds) and ``guard_set`` (with both models' guard measurements).
    """
    project_gain = compare(project[0]["scores"], project[1]["scores"], rule)
    guard_gain = compare(guard[0]["scores"], guard[1]["scores"], rule)
    decision = decide(project_gain, guard_gain, rule)
    return {"promote": decision.promote, "verdict": decision.verdict.value, "why": decision.why,
            "rule": asdict(rule), "project": project_gain.to_dict(), "guard": guard_gain.to_dict(),
            "guard_set": {**guard_set, "before": without_scores(guard[0]), "after": without_scores(guard[1])}}
