"""Acceptance: learning from annotations made in a real Label Studio.

Annotations saved through Label Studio's API reach the example store through Label Studio's own
webhook; the Start Training button (``POST /api/ml/{id}/train``) runs a fine-tuning job on a
training worker; once the candidate is promoted, the predictions Label Studio shows carry the new
model version. The training worker uses a seconds-long recipe with one robot click per example and
margins of a whole IoU, so the promotion gate always passes (its decision rule, and the rejection
of candidates trained on wrong masks, are covered by the backend tests).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
from label_studio_sdk.converter.brush import mask2rle

from backend.bench.annotator import keypoint_region
from backend.bench.harness import ManagedProcess, worker_process
from backend.config import Settings
from backend.storage.examples import ExampleStore
from backend.storage.registry import ModelRegistry
from fcanet_core import next_click
from fcanet_core.data.datasets import Sample

pytestmark = pytest.mark.e2e

IMAGES = ("teddy", "banana1", "elefant")
FAST_RECIPE = {"FINETUNE_STEPS": "2", "FINETUNE_BATCH_SIZE": "2", "FINETUNE_CROP": "64", "EVAL_MAX_CLICKS": "1",
               "GATE_CLICKS": "1", "GATE_MARGIN": "1", "GUARD_MARGIN": "1", "MIN_TRAIN_EXAMPLES": "2",
               "TRAIN_LOCK_TTL": "10"}
TIMEOUT_S = 300.0


def wait_for(condition: Callable[[], bool], what: str, worker: ManagedProcess, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s; training worker log:\n{worker.tail()}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def training_worker(backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """A worker on the ``training`` queue with the backend's environment and the fast recipe."""
    log = tmp_path_factory.mktemp("learning") / "worker-training.log"
    worker = worker_process({**backend.env, **FAST_RECIPE}, "training", log).start()
    try:
        worker.wait_rq_worker(backend.redis_url)
        yield worker
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def registry(backend) -> Iterator[ModelRegistry]:
    """The backend's registry; versions promoted here are rolled back afterwards."""
    settings = Settings.from_env(backend.env)
    registry = ModelRegistry(settings.model_dir, settings.fcanet_checkpoint)
    original = registry.current().name
    yield registry
    while registry.current().name != original:
        registry.rollback()


def annotation_result(sample: Sample) -> list[dict]:
    """What the labeling UI saves for an object: the smart keypoint and the brush mask."""
    gt = sample.gt
    height, width = gt.shape
    mask = (gt == 1).astype(np.uint8)
    click = next_click(np.zeros_like(mask), gt)
    brush = {"id": "brush1", "from_name": "tag", "to_name": "image", "type": "brushlabels",
             "original_width": width, "original_height": height, "image_rotation": 0,
             "value": {"format": "rle", "rle": mask2rle(mask * 255), "brushlabels": ["Object"]}}
    return [keypoint_region(click, width, height), brush]


def test_annotations_train_a_version_that_label_studio_then_shows(
        make_project: Callable, backend, ls_api, grabcut: dict[str, Sample], training_worker: ManagedProcess,
        registry: ModelRegistry) -> None:
    project = make_project(IMAGES)
    store = ExampleStore(Path(backend.model_dir) / "examples")
    for name in IMAGES:
        ls_api.create_annotation(project.tasks[name], annotation_result(grabcut[name]))
    wait_for(lambda: len(store.examples(str(project.id))) == len(IMAGES), "stored examples", training_worker)
    by_task = {e.task_id: e for e in store.examples(str(project.id))}
    for name in IMAGES:
        example = by_task[project.tasks[name]]
        image, gt = example.sample().load()
        np.testing.assert_array_equal(image, grabcut[name].image)
        np.testing.assert_array_equal(gt, (grabcut[name].gt == 1).astype(np.uint8))
        assert len(example.clicks) == 1 and example.clicks[0].positive

    before = registry.current().name
    ls_api.request("POST", f"/api/ml/{project.ml_id}/train", json={})
    wait_for(lambda: registry.current().name != before, "promoted version", training_worker)
    promoted = registry.current()
    assert promoted.parent == before and promoted.data["project"] == str(project.id)

    sample = grabcut[IMAGES[0]]
    height, width = sample.gt.shape
    click = next_click(np.zeros_like(sample.gt), sample.gt)
    reply = ls_api.interactive_annotating(project.ml_id, project.tasks[IMAGES[0]],
                                          [keypoint_region(click, width, height)])
    assert reply["data"]["model_version"] == promoted.name

