"""Acceptance: the README's serve command with a real Label Studio keeps answering clicks while a
model trains and right after its promotion, and a Start Training right after an automatic trigger
trains once.

``bash scripts/serve.sh`` runs here as users run it (web process, a click worker and a training
worker at low priority with capped threads) on a Redis db of its own, against the session's Label
Studio. Three saved annotations reach it through Label Studio's webhook; the third triggers a
fine-tuning (``TRAIN_EVERY_N_EXAMPLES=3``) and Start Training follows at once.
"""
from __future__ import annotations

import time
import uuid
from typing import Iterator

import numpy as np
import pytest
import redis

from backend.bench.annotator import keypoint_region
from backend.learning import KEY_PREFIX
from backend.storage.registry import ModelRegistry
from fcanet_core import next_click
from fcanet_core.data.datasets import Sample
from tests.e2e.conftest import Served
from tests.e2e.test_learning import annotation_result

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

IMAGES = ("teddy", "banana1", "elefant")
#: Long enough to click during it, short enough for a test; the gate passes (one robot click).
RECIPE = {"FINETUNE_STEPS": "40", "FINETUNE_TIME_BUDGET": "0", "FINETUNE_BATCH_SIZE": "2", "FINETUNE_CROP": "64",
          "EVAL_MAX_CLICKS": "1", "MIN_TRAIN_EXAMPLES": "2", "TRAIN_EVERY_N_EXAMPLES": "3", "TRAIN_LOCK_TTL": "10",
          "GATE_CLICKS": "1", "GATE_MARGIN": "1", "GUARD_MARGIN": "1"}
TIMEOUT_S = 600.0


@pytest.fixture
def served(serve) -> Iterator[Served]:
    """``bash scripts/serve.sh`` with the short recipe."""
    with serve(RECIPE) as running:
        yield running


def test_clicks_answer_while_a_model_trains_and_training_runs_once(served: Served, ls_api,
                                                                    grabcut: dict[str, Sample]) -> None:
    project = ls_api.create_project(f"serve-{uuid.uuid4().hex[:8]}")
    tasks = ls_api.upload_images(project, [grabcut[n].image_path for n in IMAGES])
    ml_id = ls_api.connect_backend(project, served.url)
    registry = ModelRegistry(served.model_dir, "default")
    default = registry.current().name
    for name in IMAGES:
        ls_api.create_annotation(tasks[name], annotation_result(grabcut[name]))
    connection = redis.Redis.from_url(served.redis_url)
    lock = f"{KEY_PREFIX}:{project}:lock"
    deadline = time.monotonic() + TIMEOUT_S
    while not connection.exists(f"{KEY_PREFIX}:{project}:pending") and not connection.exists(lock):
        assert time.monotonic() < deadline, served.process.tail()
        time.sleep(0.1)                                       # the automatic trigger fired
    ls_api.request("POST", f"/api/ml/{ml_id}/train", json={})

    sample = grabcut[IMAGES[0]]
    height, width = sample.gt.shape
    region = keypoint_region(next_click(np.zeros_like(sample.gt), sample.gt), width, height)
    during, after = 0, []
    while len(after) < 3:
        assert time.monotonic() < deadline, f"no promotion within {TIMEOUT_S:.0f} s:\n{served.process.tail()}"
        training = bool(connection.exists(lock))
        reply = ls_api.interactive_annotating(ml_id, tasks[IMAGES[0]], [region])
        assert "errors" not in reply and reply["data"]["result"], reply
        if registry.current().name != default:
            after.append(reply["data"]["model_version"])
        else:
            during += training
    assert during >= 1, "no click was answered while the model trained"
    promoted = registry.current().name
    assert after[-1] == promoted

    time.sleep(5)                                             # a redundant second run would start now
    while connection.exists(lock) or redis.Redis.from_url(served.redis_url).llen("rq:queue:training"):
        assert time.monotonic() < deadline, served.process.tail()
        time.sleep(0.5)
    assert [v.name for v in registry.list()] == [default, promoted], "Start Training trained a second time"
