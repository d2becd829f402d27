"""Redis outages: ``/health`` tells, and webhooks accepted meanwhile are collected once Redis is back.

A private ``redis-server`` on a free port (no persistence) is killed and started again by the
tests; the app is served over real HTTP with its spool drainer running, and a real worker process
collects the spooled annotation after the restart.
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import redis
import requests

from backend.bench.harness import free_port, worker_process
from backend.storage.examples import ExampleStore
from backend.web.app import create_app
from tests.support.learning import PROJECT, annotation_payload


class PrivateRedis:
    """A redis-server of this test's own that can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping()
                return
            except redis.RedisError:
                assert time.monotonic() < deadline, "private redis-server did not start"
                time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.kill()


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
    assert list((model_dir / "spool").glob("*.json")) == []
