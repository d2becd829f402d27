"""Helpers of the learning tests: webhook bodies for horse images, stored examples, finished jobs."""
from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import redis
from label_studio_sdk.converter.brush import mask2rle
from PIL import Image
from rq.job import Job, JobStatus

from backend.labelstudio.annotations import AnnotationRecord
from backend.labelstudio.masks import Instance
from backend.storage.examples import ExampleStore
from backend.web.app import create_app

PROJECT = "9"
#: A recipe that trains in seconds; one robot click per example, and margins of a whole IoU make
#: the promotion gate pass whatever a random-weights model does on one held-out example (too few
#: for a confident call), so tests that need a promotion get one.
FAST = {"FINETUNE_STEPS": "2", "FINETUNE_BATCH_SIZE": "2", "FINETUNE_CROP": "48", "EVAL_MAX_CLICKS": "1",
        "GATE_CLICKS": "1", "GATE_MARGIN": "1", "GUARD_MARGIN": "1",
        "MIN_TRAIN_EXAMPLES": "2", "TRAIN_LOCK_TTL": "5", "TRAIN_JOB_TIMEOUT": "300", "TRAIN_EVERY_N_EXAMPLES": "50"}


def annotation_payload(capture: Callable, ls_files, pair: tuple[np.ndarray, np.ndarray], annotation_id: int,
                       action: str = "ANNOTATION_CREATED", updated_at: str = "2026-11-24T09:16:58Z") -> dict:
    """A webhook body like the captured one, for a horse image served by ``ls_files``."""
    image, mask = pair
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    relative = ls_files.add(f"upload/{PROJECT}/horse-{annotation_id}.png", buffer.getvalue())
    payload = capture("webhook_annotation_created")
    payload["action"] = action
    payload["project"]["id"] = int(PROJECT)
    payload["task"].update(id=100 + annotation_id, data={"image": "/data/" + relative})
    annotation = payload["annotation"]
    annotation.update(id=annotation_id, task=100 + annotation_id, project=int(PROJECT), updated_at=updated_at)
    region = annotation["result"][0]
    region.update(original_width=mask.shape[1], original_height=mask.shape[0])
    region["value"]["rle"] = mask2rle(mask * 255)
    return payload


def post(client, payload: dict) -> dict:
    reply = client.post("/webhook", json=payload)
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()["result"]


def wait_job(connection: redis.Redis, job_id: str, timeout: float = 240) -> Job:
    """The job once finished (or failed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = Job.fetch(job_id, connection=connection)
        if job.get_status() in (JobStatus.FINISHED, JobStatus.FAILED):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {job.get_status()} after {timeout}s")


def put_examples(model_dir: Path, pairs, ids) -> None:
    store = ExampleStore(model_dir / "examples")
    for (image, mask), ann in zip(pairs, ids):
        store.put(AnnotationRecord(PROJECT, ann, ann, f"/x/{ann}.png", "t", ()), image, [Instance("r", "Object", mask)])


def four_examples_and_start(make_settings: Callable, env: dict, redis_url: str, capture: Callable,
                            horses: list) -> tuple[Path, Any, dict]:
    """Four stored examples of the project, a queued app's test client and a Start Training body."""
    model_dir = Path(env["MODEL_DIR"])
    put_examples(model_dir, horses[:4], [1, 2, 3, 4])
    client = create_app(make_settings(**env, REDIS_URL=redis_url)).test_client()
    start = capture("webhook_start_training")
    start["project"]["id"] = int(PROJECT)
    return model_dir, client, start
