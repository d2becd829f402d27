"""Acceptance: auto-annotation of a whole project through a real Label Studio, Redis and worker.

Every task's annotation holds one keypoint at the object's interior-most point (the robot user's
first click). ``python -m backend auto-annotate`` runs one job per task on the ``batch`` queue (the
session's worker serves ``inference,batch``); each task must then carry one prediction of the
current model version whose mask is the one fcanet_core's Predictor gives for that click.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from backend.bench.annotator import brush_mask, keypoint_region, robot_click
from backend.config import Settings
from backend.storage.registry import ModelRegistry
from fcanet_core import Click, Predictor, load_model
from fcanet_core.data.datasets import Sample
from fcanet_core.evaluation.robot import iou

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("teddy", "banana1", "llama", "sheep", "flower", "doll", "bush", "book", "ceramic", "memorial")
#: Masks through Label Studio and the batch queue vs fcanet_core directly.
SAME_MASK_IOU = 0.99
#: One click at the interior-most point of a GrabCut object: a sanity bound on the overlap with the
#: ground truth (misplaced masks give near 0; the model's own quality is measured by fcanet_core.evaluate).
MIN_MEAN_IOU = 0.25


@pytest.fixture(scope="module")
def reference(backend) -> tuple[Predictor, str]:
    """fcanet_core's Predictor for the backend's current model and options, and that version's name."""
    settings = Settings.from_env(backend.env)
    version = ModelRegistry(settings.model_dir, settings.fcanet_checkpoint).current()
    predictor = Predictor(load_model(version.checkpoint), sis=settings.sis, zoom_in=False,
                          short_side=settings.short_side)
    return predictor, version.name


def first_click(sample: Sample) -> Click:
    """The robot user's first click on an object, at its pixel centre."""
    return robot_click(np.zeros(sample.gt.shape, np.uint8), sample.gt, [])


def annotate_with_keypoint(ls_api, task_id: int, click: Click, width: int, height: int) -> None:
    region = keypoint_region(click, width, height)
    del region["is_positive"]  # saved annotations carry no polarity flag: a keypoint is positive
    ls_api.create_annotation(task_id, [region])


def auto_annotate(backend, project_id: int, out: Path, *args: str) -> dict:
    """Run the CLI against the session's stack; returns its JSON summary (exit code included)."""
    proc = subprocess.run(
        [sys.executable, "-m", "backend", "auto-annotate", "--project", str(project_id), "--json", str(out), *args],
        cwd=REPO_ROOT, env=backend.env, capture_output=True, text=True, timeout=900,
    )
    assert out.is_file(), f"no summary written (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return {**json.loads(out.read_text()), "exit_code": proc.returncode, "stdout": proc.stdout}


def current_predictions(ls_api, task_id: int, version: str) -> list[dict]:
    return [p for p in ls_api.predictions(task_id) if p["model_version"] == version]


def test_project_auto_annotation(make_project: Callable, backend, ls_api, grabcut: dict[str, Sample], reference,
                                 tmp_path: Path, record_property) -> None:
    predictor, version = reference
    project = make_project(IMAGES, connect=False)
    clicks = {}
    for name in IMAGES:
        height, width = grabcut[name].gt.shape
        clicks[name] = first_click(grabcut[name])
        annotate_with_keypoint(ls_api, project.tasks[name], clicks[name], width, height)
    # A task whose image cannot be decoded, with a prompt like the others.
    ls_api.request("POST", f"/api/projects/{project.id}/import", files={"file": ("broken.png", b"not an image")})
    broken = next(t["id"] for t in ls_api.tasks(project.id) if t["id"] not in project.tasks.values())
    annotate_with_keypoint(ls_api, broken, Click(10, 10, True), 100, 100)

    summary = auto_annotate(backend, project.id, tmp_path / "first.json")
    assert summary["exit_code"] == 1, summary["stdout"]  # one task failed
    assert (summary["mode"], summary["model_version"]) == ("queued", version)
    assert (summary["done"], summary["skipped"], summary["failed"], summary["pending"]) == (len(IMAGES), 0, 1, 0)
    assert summary["failures"][0]["task_id"] == broken
    assert "image" in summary["failures"][0]["reason"]
    assert f"failed task {broken}" in summary["stdout"]
    assert ls_api.predictions(broken) == []

    ious = {}
    for name in IMAGES:
        sample = grabcut[name]
        predictions = current_predictions(ls_api, project.tasks[name], version)
        assert len(predictions) == 1, name
        (result,) = predictions[0]["result"]
        assert (result["type"], result["from_name"], result["value"]["brushlabels"]) == ("brushlabels", "tag", ["Object"])
        mask = brush_mask(result)
        expected = predictor.predict(sample.image, [clicks[name]]).mask
        assert iou(mask, expected) >= SAME_MASK_IOU, name
        assert 0.0 < predictions[0]["score"] <= 1.0
        ious[name] = iou(mask, sample.gt)
    mean_iou = float(np.mean(list(ious.values())))
    record_property("mean_iou_one_click", round(mean_iou, 4))
    logger.info("auto-annotation, one click per object: mean IoU %.3f vs ground truth over %d GrabCut tasks (%s)",
                   mean_iou, len(ious), ", ".join(f"{k} {v:.3f}" for k, v in ious.items()))
    assert mean_iou >= MIN_MEAN_IOU

    # A rerun only retries what is missing: no duplicates, the broken task is reported again.
    again = auto_annotate(backend, project.id, tmp_path / "again.json")
    assert (again["done"], again["skipped"], again["failed"]) == (0, len(IMAGES), 1)
    assert again["skip_reasons"] == {f"has a prediction of model version {version}": len(IMAGES)}
    for name in IMAGES:
        assert len(current_predictions(ls_api, project.tasks[name], version)) == 1, name

    # Forced redo of one task (filter by id) replaces its prediction instead of adding one.
    task_id = project.tasks["teddy"]
    old = current_predictions(ls_api, task_id, version)[0]["id"]
    redo = auto_annotate(backend, project.id, tmp_path / "redo.json", "--no-only-missing", "--filter", f"id={task_id}")
    assert (redo["done"], redo["failed"], redo["filtered_out"], redo["exit_code"]) == (1, 0, len(IMAGES), 0)
    (replaced,) = current_predictions(ls_api, task_id, version)
    assert replaced["id"] != old


def test_retrieve_predictions_gives_the_auto_annotation_masks(make_project: Callable, backend, ls_api,
                                                              grabcut: dict[str, Sample], reference) -> None:
    predictor, version = reference
    names = IMAGES[:2]
    project = make_project(names)
    for name in names:
        height, width = grabcut[name].gt.shape
        annotate_with_keypoint(ls_api, project.tasks[name], first_click(grabcut[name]), width, height)
    ls_api.retrieve_predictions(project.id, list(project.tasks.values()))
    for name in names:
        (prediction,) = current_predictions(ls_api, project.tasks[name], version)
        assert len(prediction["result"]) == 1, name
        expected = predictor.predict(grabcut[name].image, [first_click(grabcut[name])]).mask
        assert iou(brush_mask(prediction["result"][0]), expected) >= SAME_MASK_IOU, name


def test_an_empty_answer_never_counts_as_done(make_project: Callable, backend, ls_api, grabcut: dict[str, Sample],
                                              reference, tmp_path: Path) -> None:
    _, version = reference
    names = IMAGES[2:4]
    project = make_project(names)
    ls_api.retrieve_predictions(project.id, list(project.tasks.values()))      # no prompts yet
    assert all(ls_api.predictions(project.tasks[name]) == [] for name in names)
    stale = project.tasks[names[1]]                 # an empty prediction of this version, stored earlier
    ls_api.request("POST", "/api/predictions", json={"task": stale, "result": [], "model_version": version})
    ls_api.request("DELETE", f"/api/ml/{project.ml_id}")   # as in the test above: no live predictions meanwhile
    for name in names:
        height, width = grabcut[name].gt.shape
        annotate_with_keypoint(ls_api, project.tasks[name], first_click(grabcut[name]), width, height)
    summary = auto_annotate(backend, project.id, tmp_path / "after-prompts.json")
    assert (summary["done"], summary["skipped"], summary["failed"]) == (2, 0, 0), summary["stdout"]
    for name in names:
        (prediction,) = current_predictions(ls_api, project.tasks[name], version)
        assert prediction["result"], name
