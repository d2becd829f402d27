"""Redis outages: ``/health`` tells, and webhooks accepted meanwhile are collected once Redis is back.

A private ``redis-server`` on a free port (no persistence) is killed and started again by the
tests; the app is served over real HTTP with its spool replay running, and a real worker process
collects the spooled annotation after the restart.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import requests

from backend.bench.harness import worker_process
from backend.storage.examples import ExampleStore
from backend.web.app import create_app
from tests.support.learning import PROJECT, annotation_payload


def test_health_reports_redis_down_and_queues_without_workers(make_settings, serve_http, private_redis):
    url = serve_http(create_app(make_settings(REDIS_URL=private_redis.url)))
    answer = requests.get(url + "/health", timeout=5)
    assert answer.status_code == 200 and answer.json()["status"] == "UP"
    assert answer.json()["queues"]["inference"] == {"waiting": 0, "workers": 0}
    assert any("'training' queue" in w for w in answer.json()["warnings"])
    private_redis.kill()
    started = time.monotonic()
    answer = requests.get(url + "/health", timeout=5)
    assert time.monotonic() - started < 1.0
    assert answer.status_code == 503 and answer.json()["status"] == "DOWN"
    assert "Redis" in answer.json()["detail"]


@pytest.mark.slow
def test_a_webhook_accepted_while_redis_is_down_is_collected_when_it_returns(
        make_settings, backend_env, serve_http, private_redis, capture, ls_files, tmp_path: Path):
    model_dir = tmp_path / "model_data"
    env = {**backend_env, "MODEL_DIR": str(model_dir), "REDIS_URL": private_redis.url}
    url = serve_http(create_app(make_settings(**env)))
    image = np.zeros((48, 64, 3), np.uint8)
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 20:40] = 1
    image[mask == 1] = 200
    payload = annotation_payload(capture, ls_files, (image, mask), annotation_id=77)

    private_redis.kill()
    answer = requests.post(url + "/webhook", json=payload, timeout=5)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "spooled"
    assert len(list((model_dir / "spool").glob("*.json"))) == 1     # on disk before the answer

    private_redis.start()
    worker = worker_process(env, "training", tmp_path / "worker.log").start()
    try:
        store = ExampleStore(model_dir / "examples")
        deadline = time.monotonic() + 120
        while not store.examples(PROJECT):
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.3)
    finally:
        worker.stop()
    (example,) = store.examples(PROJECT)
    assert example.annotation_id == 77
    deadline = time.monotonic() + 30                  # the spool file goes once the job is seen finished
    while list((model_dir / "spool").glob("*.json")):
        assert time.monotonic() < deadline, "the spooled event was never confirmed done"
        time.sleep(0.3)
