"""The learning path with real Redis, real worker processes and the real Flask app.

Webhooks → collect jobs → stored examples; Start Training / every N examples → one fine-tuning job
per project (coalesced) → evaluated candidate → promotion; a trainer killed with SIGKILL leaves
the current model alone, its job failed and its lock free, and a rerun works. Without Redis the
same happens in the web process's background thread. The model is the tiny random-weights
``lite0``; the images are real horse photos shrunk to 96 px, so a fine-tuning takes seconds.
"""
from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import redis
from label_studio_sdk.converter.brush import mask2rle
from PIL import Image
from rq import Queue
from rq.job import Job, JobStatus

from backend import learning
from backend.app import create_app
from backend.examples import AnnotationRecord, ExampleStore, Instance
from backend.learning import not_worse, split_examples
from backend.registry import ModelRegistry
from fcanet_core import load_model
from fcanet_core.datasets import load_samples
from fcanet_core.predictor import model_input_short_side

PROJECT = "9"
#: A recipe that trains in seconds; one robot click per held-out example makes the promotion gate
#: always pass (NoC is 1 for every model), so tests that need a promotion get one.
FAST = {"FINETUNE_STEPS": "2", "FINETUNE_BATCH_SIZE": "2", "FINETUNE_CROP": "48", "EVAL_MAX_CLICKS": "1",
        "MIN_TRAIN_EXAMPLES": "2", "TRAIN_LOCK_TTL": "2", "TRAIN_JOB_TIMEOUT": "300", "TRAIN_EVERY_N_EXAMPLES": "50"}


@pytest.fixture(scope="module")
def horses(shared_dir: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Six real horse images with their masks, shrunk to 96 px wide."""
    pairs = []
    for sample in load_samples(shared_dir / "data" / "train" / "horses", limit=6):
        image, gt = sample.load()
        size = (96, round(96 * image.shape[0] / image.shape[1]))
        small = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
        mask = np.asarray(Image.fromarray((gt == 1).astype(np.uint8)).resize(size, Image.NEAREST))
        pairs.append((small, mask))
    return pairs


@pytest.fixture
def env(backend_env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The backend environment with a MODEL_DIR of this test and the fast recipe (also in this process)."""
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)
    return {**backend_env, **FAST, "MODEL_DIR": str(tmp_path / "model_data")}


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


# --------------------------------------------------------------------------- pure parts

def test_split_is_deterministic_by_annotation_and_stable_as_data_grows(tmp_path: Path, horses) -> None:
    put_examples(tmp_path, horses * 5, range(1, 31))
    examples = ExampleStore(tmp_path / "examples").examples(PROJECT)
    train, held = split_examples(examples, 0.2)
    again = split_examples(list(reversed(examples)), 0.2)
    assert ({e.key for e in again[0]}, {e.key for e in again[1]}) == ({e.key for e in train}, {e.key for e in held})
    assert {e.key for e in train} | {e.key for e in held} == {e.key for e in examples}
    assert 1 <= len(held) < len(examples) and not {e.annotation_id for e in train} & {e.annotation_id for e in held}
    fewer_train, fewer_held = split_examples(examples[:20], 0.2)
    assert {e.key for e in fewer_held} <= {e.key for e in held}
    assert {e.key for e in fewer_train} <= {e.key for e in train}
    two_train, two_held = split_examples(examples[:2], 0.2)
    assert len(two_train) == len(two_held) == 1


def test_promotion_rule_needs_both_nocs_not_worse() -> None:
    assert not_worse({"noc85": 3.0, "noc90": 5.0}, {"noc85": 3.0, "noc90": 5.0})
    assert not_worse({"noc85": 3.0, "noc90": 5.0}, {"noc85": 2.0, "noc90": 4.5})
    assert not not_worse({"noc85": 3.0, "noc90": 5.0}, {"noc85": 2.0, "noc90": 5.1})
    assert not not_worse({"noc85": 3.0, "noc90": 5.0}, {"noc85": 3.5, "noc90": 4.0})


# --------------------------------------------------------------------------- webhooks

def test_bad_webhooks_get_400_and_other_events_are_ignored(make_settings, env, redis_url, capture) -> None:
    client = create_app(make_settings(**env, REDIS_URL=redis_url)).test_client()
    payload = capture("webhook_annotation_created")
    payload["annotation"]["id"] = "../1"
    reply = client.post("/webhook", json=payload)
    assert reply.status_code == 400 and "annotation.id" in reply.get_json()["detail"]
    assert client.post("/webhook", json={"action": "START_TRAINING"}).status_code == 400
    assert client.post("/webhook", json={"action": "ANNOTATIONS_DELETED", "project": {"id": 1}}).status_code == 400
    assert post(client, capture("webhook_tasks_created"))["status"] == "ignored"
    assert Queue("training", connection=redis.Redis.from_url(redis_url)).count == 0


@pytest.mark.slow
def test_annotation_webhooks_store_update_and_remove_examples_through_a_worker(
        make_settings, env, redis_url, capture, ls_files, horses, start_worker) -> None:
    client = create_app(make_settings(**env, REDIS_URL=redis_url)).test_client()
    connection = redis.Redis.from_url(redis_url)
    store = ExampleStore(Path(env["MODEL_DIR"]) / "examples")
    created = post(client, annotation_payload(capture, ls_files, horses[0], 1))
    assert created["status"] == "queued" and len(created["jobs"]) == 1
    assert store.examples(PROJECT) == [], "the webhook only enqueues; the worker stores"
    assert Queue("training", connection=connection).count == 1

    start_worker(env, queues="training")
    assert wait_job(connection, created["jobs"][0]).get_status() == JobStatus.FINISHED
    [example] = store.examples(PROJECT)
    image, gt = example.sample().load()
    np.testing.assert_array_equal(image, horses[0][0])
    np.testing.assert_array_equal(gt, horses[0][1])

    edited = (horses[0][0], np.ascontiguousarray(horses[0][1][:, ::-1]))
    updated = post(client, annotation_payload(capture, ls_files, edited, 1, "ANNOTATION_UPDATED",
                                              updated_at="2026-11-24T10:00:00Z"))
    wait_job(connection, updated["jobs"][0])
    [example] = store.examples(PROJECT)
    np.testing.assert_array_equal(example.sample().gt, edited[1])

    removed = post(client, {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 1}],
                            "project": capture("webhook_start_training")["project"] | {"id": int(PROJECT)}})
    assert wait_job(connection, removed["jobs"][0]).return_value() == {"project": PROJECT, "removed": 1}
    assert store.examples(PROJECT) == []


@pytest.mark.slow
def test_start_training_coalesces_and_promotes_the_candidate(
        make_settings, env, redis_url, capture, horses, start_worker, tiny_checkpoint) -> None:
    model_dir = Path(env["MODEL_DIR"])
    put_examples(model_dir, horses[:4], [1, 2, 3, 4])
    client = create_app(make_settings(**env, REDIS_URL=redis_url)).test_client()
    start = capture("webhook_start_training")
    start["project"]["id"] = int(PROJECT)
    first, second = post(client, start), post(client, start)
    assert (first["status"], second["status"]) == ("queued", "coalesced")
    assert first["job_id"] == second["job_id"]
    connection = redis.Redis.from_url(redis_url)
    assert Queue("training", connection=connection).count == 1

    start_worker(env, queues="training")
    job = wait_job(connection, first["job_id"])
    assert job.get_status() == JobStatus.FINISHED, job.latest_result().exc_string
    summary = job.return_value()
    assert summary["status"] == "promoted" and summary["parent"] == "tiny-lite0"
    assert summary["train_examples"] + summary["holdout_examples"] == 4
    registry = ModelRegistry(model_dir, str(tiny_checkpoint))
    assert registry.current().name == summary["version"]
    meta = registry.metadata(summary["version"])
    assert meta["parent"] == "tiny-lite0" and meta["accepted"] is True
    assert meta["metrics"]["baseline"]["noc90"] == summary["metrics"]["before"]["noc90"]
    assert sorted(meta["data"]["train_keys"] + meta["data"]["holdout_keys"]) == ["1-0", "2-0", "3-0", "4-0"]
    assert meta["recipe"]["max_steps"] == 2 and meta["recipe"]["reason"] == "start_training"
    scale = model_input_short_side(load_model(tiny_checkpoint))
    assert meta["recipe"]["short_side"] == meta["input_short_side"] == scale, "trained and served at the parent's scale"
    assert model_input_short_side(load_model(registry.current().checkpoint)) == scale
    state = learning.load_state(make_settings(**env), PROJECT)
    assert sorted(state["trained"]) == ["1-0", "2-0", "3-0", "4-0"]
    assert not any((model_dir / "training" / PROJECT / "runs").iterdir())
    assert post(client, start)["status"] == "queued", "a finished job no longer absorbs new requests"


@pytest.mark.slow
def test_every_n_new_examples_request_one_fine_tuning(
        make_settings, env, redis_url, capture, ls_files, horses, start_worker, tiny_checkpoint) -> None:
    env = {**env, "TRAIN_EVERY_N_EXAMPLES": "3"}
    client = create_app(make_settings(**env, REDIS_URL=redis_url)).test_client()
    connection = redis.Redis.from_url(redis_url)
    jobs = [post(client, annotation_payload(capture, ls_files, horses[i], i + 1))["jobs"][0] for i in range(3)]
    start_worker(env, queues="training")
    results = [wait_job(connection, j).return_value() for j in jobs]
    assert [r["training"] for r in results[:2]] == [None, None]
    assert results[2]["training"]["status"] == "queued" and results[2]["training"]["reason"] == "examples"
    summary = wait_job(connection, results[2]["training"]["job_id"]).return_value()
    assert summary["status"] == "promoted" and summary["reason"] == "examples"
    assert ModelRegistry(env["MODEL_DIR"], str(tiny_checkpoint)).current().name == summary["version"]

    fourth = post(client, annotation_payload(capture, ls_files, horses[3], 4))["jobs"][0]
    assert wait_job(connection, fourth).return_value()["training"] is None, "one new example is not enough"


@pytest.mark.slow
def test_killed_trainer_leaves_the_model_fails_the_job_frees_the_lock_and_a_rerun_works(
        make_settings, env, redis_url, capture, horses, start_worker, tiny_checkpoint) -> None:
    model_dir = Path(env["MODEL_DIR"])
    put_examples(model_dir, horses[:4], [1, 2, 3, 4])
    client = create_app(make_settings(**env, REDIS_URL=redis_url)).test_client()
    start = capture("webhook_start_training")
    start["project"]["id"] = int(PROJECT)
    connection = redis.Redis.from_url(redis_url)
    registry = ModelRegistry(model_dir, str(tiny_checkpoint))
    default_bytes = tiny_checkpoint.read_bytes()

    doomed = post(client, start)["job_id"]
    worker = start_worker({**env, "FINETUNE_STEPS": "100000"}, queues="training")
    lock = f"{learning.KEY_PREFIX}:{PROJECT}:lock"
    runs = model_dir / "training" / PROJECT / "runs"
    deadline = time.monotonic() + 180
    while not (connection.exists(lock) and any(runs.glob("*/run"))):
        assert time.monotonic() < deadline, worker.tail()
        time.sleep(0.2)
    time.sleep(2)  # training steps are running
    os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait(timeout=30)

    assert registry.current().name == "tiny-lite0"
    assert [v.name for v in registry.list()] == ["tiny-lite0"]
    assert tiny_checkpoint.read_bytes() == default_bytes
    deadline = time.monotonic() + 30
    while connection.exists(lock):
        assert time.monotonic() < deadline, "the killed trainer's lock did not expire"
        time.sleep(0.3)

    start_worker(env, queues="training")  # its start-up maintenance finds the abandoned job
    assert wait_job(connection, doomed, timeout=60).get_status() == JobStatus.FAILED
    rerun = post(client, start)
    assert rerun["status"] == "queued" and rerun["job_id"] != doomed
    summary = wait_job(connection, rerun["job_id"]).return_value()
    assert summary["status"] == "promoted"
    assert registry.current().name == summary["version"]
    assert [p.name for p in runs.iterdir()] == []


@pytest.mark.slow
def test_without_redis_the_web_process_collects_and_trains_in_the_background(
        make_settings, env, capture, ls_files, horses, tiny_checkpoint) -> None:
    settings = make_settings(**env, REDIS_URL=None)
    client = create_app(settings).test_client()
    for i in range(3):
        assert post(client, annotation_payload(capture, ls_files, horses[i], i + 1))["status"] == "queued"
    start = capture("webhook_start_training")
    start["project"]["id"] = int(PROJECT)
    assert post(client, start)["status"] == "queued"
    registry = ModelRegistry(env["MODEL_DIR"], str(tiny_checkpoint))
    deadline = time.monotonic() + 300
    while registry.current().name == "tiny-lite0":
        assert time.monotonic() < deadline, "no promotion from the background fine-tuning"
        time.sleep(0.5)
    state = learning.load_state(settings, PROJECT)
    assert state["last_run"]["version"] == registry.current().name
    assert sorted(state["trained"]) == ["1-0", "2-0", "3-0"]


def test_time_budget_ends_the_run_early_and_still_yields_a_candidate(
        make_settings, env, horses, tiny_checkpoint) -> None:
    settings = make_settings(**{**env, "FINETUNE_STEPS": "100000", "FINETUNE_TIME_BUDGET": "0.01"}, REDIS_URL=None)
    put_examples(Path(env["MODEL_DIR"]), horses[:3], [1, 2, 3])
    summary = learning.fine_tune(PROJECT, "manual", settings)
    meta = ModelRegistry(env["MODEL_DIR"], str(tiny_checkpoint)).metadata(summary["version"])
    assert summary["status"] == "promoted" and meta["recipe"]["time_budget_s"] == 0.01
    assert 1 <= meta["steps"] < 100000, "the budget, not the step count, ended the run"
