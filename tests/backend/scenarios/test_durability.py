"""Nothing acknowledged is lost: every webhook answered 2xx ends up stored exactly once.

Real faults: a private Redis restarted without its data between the answer and the worker, a
real full file system (tmpfs) under the spool or under the example store, identifiers that would
not fit a file name. The app is served over real HTTP; a real worker process collects.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import requests

from backend.web.app import create_app
from backend.bench.harness import worker_process
from backend.storage.examples import ExampleStore
from backend.learning import intake
from tests.support.learning import PROJECT, annotation_payload


@pytest.fixture
def quick_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replay spooled events after 1 s and retry failed jobs after 1 s (defaults: 10 s and 30 s)."""
    monkeypatch.setattr(intake, "GRACE_S", 1.0)
    monkeypatch.setattr(intake, "RETRY_AFTER_S", 1.0)


def _pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 120, (48, 64, 3), dtype=np.uint8)
    mask = np.zeros((48, 64), np.uint8)
    mask[8 + seed:30, 16:40 + seed] = 1
    image[mask == 1] = 220
    return image, mask


def _wait_stored(model_dir: Path, ids: list[int], worker, timeout: float = 120) -> None:
    """Until exactly ``ids`` are stored and the spool holds nothing."""
    store = ExampleStore(model_dir / "examples")
    deadline = time.monotonic() + timeout
    while sorted(e.annotation_id for e in store.examples(PROJECT)) != ids or list((model_dir / "spool").glob("*.json")):
        assert time.monotonic() < deadline, (sorted(e.annotation_id for e in store.examples(PROJECT)),
                                             list((model_dir / "spool").glob("*.json")), worker.tail())
        time.sleep(0.3)


@pytest.mark.slow
def test_webhooks_answered_before_redis_restarts_empty_are_stored_once(
        make_settings, backend_env, serve_http, private_redis, capture, ls_files, tmp_path, quick_replay):
    model_dir = tmp_path / "model_data"
    env = {**backend_env, "MODEL_DIR": str(model_dir), "REDIS_URL": private_redis.url}
    url = serve_http(create_app(make_settings(**env)))
    for ann in (1, 2, 3):
        answer = requests.post(url + "/webhook", json=annotation_payload(capture, ls_files, _pair(ann), ann), timeout=5)
        assert answer.status_code == 201 and answer.json()["result"]["status"] == "queued", answer.text

    private_redis.restart_empty()                     # the queued jobs are gone with it
    worker = worker_process(env, "training", tmp_path / "worker.log").start()
    try:
        _wait_stored(model_dir, [1, 2, 3], worker)
    finally:
        worker.stop()
    store = ExampleStore(model_dir / "examples")
    for example in store.examples(PROJECT):
        np.testing.assert_array_equal(example.sample().gt, _pair(example.annotation_id)[1])


@pytest.mark.slow
def test_a_full_spool_disk_refuses_with_507_and_an_accepted_webhook_survives_a_full_example_disk(
        make_settings, backend_env, serve_http, private_redis, capture, ls_files, tmp_path, full_disk_at,
        quick_replay):
    model_dir = tmp_path / "model_data"
    spool_disk = full_disk_at(model_dir / "spool", "1m")
    example_disk = full_disk_at(model_dir / "examples", "1m")
    env = {**backend_env, "MODEL_DIR": str(model_dir), "REDIS_URL": private_redis.url}
    url = serve_http(create_app(make_settings(**env)))
    worker = worker_process(env, "training", tmp_path / "worker.log").start()
    try:
        spool_disk.fill()
        refused = requests.post(url + "/webhook", json=annotation_payload(capture, ls_files, _pair(1), 1), timeout=5)
        assert refused.status_code == 507, refused.text
        assert "MODEL_DIR" in refused.json()["detail"]
        assert list((model_dir / "spool").glob("*.json")) == []     # refused: nothing half-accepted
        spool_disk.free()

        example_disk.fill()
        answer = requests.post(url + "/webhook", json=annotation_payload(capture, ls_files, _pair(2), 2), timeout=5)
        assert answer.status_code == 201, answer.text
        deadline = time.monotonic() + 60
        while "No space left on device" not in worker.tail(200):      # the collecting job hit the full disk
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.3)
        assert ExampleStore(model_dir / "examples").examples(PROJECT) == []
        assert len(list((model_dir / "spool").glob("*.json"))) == 1  # kept until it is stored
        example_disk.free()
        _wait_stored(model_dir, [2], worker)
    finally:
        worker.stop()


def test_identifiers_too_long_for_a_file_name_are_refused_with_400(make_settings, serve_http, capture, ls_files,
                                                                   tmp_path):
    model_dir = tmp_path / "model_data"
    url = serve_http(create_app(make_settings(MODEL_DIR=str(model_dir), REDIS_URL=None)))
    payload = annotation_payload(capture, ls_files, _pair(1), 1)
    payload["annotation"]["id"] = int("9" * 300)
    answer = requests.post(url + "/webhook", json=payload, timeout=5)
    assert answer.status_code == 400 and "annotation.id" in answer.json()["detail"], answer.text
    payload = annotation_payload(capture, ls_files, _pair(1), 1)
    payload["task"]["id"] = "1" * 40
    answer = requests.post(url + "/webhook", json=payload, timeout=5)
    assert answer.status_code == 400 and "task.id" in answer.json()["detail"], answer.text
    assert not list((model_dir / "spool").glob("*.json"))


def test_a_boolean_project_id_is_refused_with_400(make_settings, serve_http, capture, ls_files, tmp_path):
    model_dir = tmp_path / "model_data"
    url = serve_http(create_app(make_settings(MODEL_DIR=str(model_dir), REDIS_URL=None)))
    payload = annotation_payload(capture, ls_files, _pair(1), 1)
    payload["project"]["id"] = True
    answer = requests.post(url + "/webhook", json=payload, timeout=5)
    assert answer.status_code == 400 and "project" in answer.json()["detail"], answer.text
    assert not (model_dir / "examples" / "True").exists()
