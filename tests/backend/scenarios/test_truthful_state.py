"""State that tells the truth through faults: workers seen after Redis restarts empty, no broken
version made current (nor read again every click), ``/health`` DOWN with its reason, ``/setup``
credentials seen by every web process. Real Redis, real worker processes, real files, real HTTP."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import redis
import requests
from rq import Worker

from backend.web.app import create_app
from backend.bench.harness import worker_process
from backend.inference.engine import InferenceEngine
from backend.storage.registry import ModelRegistry
from fcanet_core import Click


def _broken_version(model_dir: Path, name: str = "broken") -> None:
    """A version folder whose checkpoint is not a checkpoint (a truncated copy, a bad disk)."""
    folder = model_dir / "versions" / name
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"\x80\x02 not a torch checkpoint")
    (folder / "version.json").write_text(json.dumps({"name": name, "created": "2026-12-01T00:00:00+00:00"}))


def _point_at(model_dir: Path, name: str, history: tuple[str, ...] = ()) -> None:
    (model_dir / "current.json").write_text(json.dumps({"current": name, "history": list(history)}))


@pytest.mark.slow
def test_workers_register_again_when_redis_restarts_empty_and_health_sees_them(
        make_settings, backend_env, serve_http, private_redis, click_body, tmp_path):
    env = {**backend_env, "MODEL_DIR": str(tmp_path / "model_data"), "REDIS_URL": private_redis.url}
    worker = worker_process(env, "inference", tmp_path / "worker.log").start()
    try:
        worker.wait_rq_worker(private_redis.url, timeout=120)
        url = serve_http(create_app(make_settings(**env)))
        assert requests.get(url + "/health", timeout=5).json()["queues"]["inference"]["workers"] == 1
        private_redis.restart_empty()
        deadline = time.monotonic() + 20              # WORKER_HEARTBEAT_TTL=3: a beat every second
        while True:
            health = requests.get(url + "/health", timeout=5).json()
            if health["status"] == "UP" and health["queues"]["inference"]["workers"] == 1:
                break
            assert time.monotonic() < deadline, (health, worker.tail())
            time.sleep(0.5)
        assert not any("'inference' queue" in w for w in health["warnings"])
        assert Worker.count(connection=redis.Redis.from_url(private_redis.url)) == 1
        answer = requests.post(url + "/predict", json=click_body, timeout=60)
        assert answer.status_code == 200, answer.text
    finally:
        worker.stop()


def test_versions_promote_refuses_a_checkpoint_that_cannot_be_loaded(backend_env, tmp_path):
    model_dir = tmp_path / "model_data"
    _broken_version(model_dir)
    env = {**backend_env, "MODEL_DIR": str(model_dir)}
    result = subprocess.run([sys.executable, "-m", "backend", "versions", "promote", "broken"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "cannot be loaded" in result.stdout + result.stderr
    registry = ModelRegistry(model_dir, backend_env["FCANET_CHECKPOINT"])
    assert registry.current().name == "tiny-lite0"
    assert not (model_dir / "current.json").exists()


def test_a_broken_current_checkpoint_is_read_once_and_the_old_model_keeps_serving(
        make_settings, tmp_path, caplog):
    model_dir = tmp_path / "model_data"
    engine = InferenceEngine(make_settings(MODEL_DIR=str(model_dir), REDIS_URL=None))
    _broken_version(model_dir)
    _point_at(model_dir, "broken")                    # made current behind the registry's back
    image = np.full((48, 64, 3), 128, np.uint8)
    with caplog.at_level(logging.ERROR, logger="backend.inference"):
        for _ in range(3):                            # three clicks
            assert engine.reload_if_changed() is False
            mask, _ = engine.segment(image, [Click(10, 10, True)])
            assert mask.shape == (48, 64)
    assert engine.model_version == "tiny-lite0"
    assert sum("cannot load" in r.getMessage() for r in caplog.records) == 1


def test_health_with_an_unreadable_registry_answers_503_down(make_settings, tmp_path):
    model_dir = tmp_path / "model_data"
    model_dir.mkdir()
    settings = make_settings(MODEL_DIR=str(model_dir), REDIS_URL="redis://127.0.0.1:1/0")
    client = create_app(settings).test_client()
    (model_dir / "current.json").write_text("{not json")
    answer = client.get("/health")
    assert answer.status_code == 503 and answer.get_json()["status"] == "DOWN"
    assert "current.json" in answer.get_json()["detail"]


def test_setup_credentials_reach_every_web_process_of_the_model_dir(make_settings, serve_http, click_body, ls_files,
                                                                  capture, tmp_path):
    settings = make_settings(MODEL_DIR=str(tmp_path / "model_data"), REDIS_URL=None, LABEL_STUDIO_URL=None,
                             LABEL_STUDIO_API_KEY=None, ALLOWED_HOSTS="127.0.0.1")
    first, second = serve_http(create_app(settings)), serve_http(create_app(settings))   # WORKERS=2
    setup = {**capture("setup"), "hostname": ls_files.url, "access_token": ls_files.token}
    assert requests.post(first + "/setup", json=setup, timeout=10).status_code == 200
    answer = requests.post(second + "/predict", json=click_body, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"][0]["result"]
    stored = tmp_path / "model_data" / "setup-credentials.json"
    assert stored.stat().st_mode & 0o077 == 0, "the tokens file is readable by its owner only"
    assert os.access(stored, os.R_OK)


@pytest.mark.slow
def test_a_fresh_worker_serves_the_last_loadable_version_when_the_current_one_is_broken(
        make_settings, backend_env, serve_http, redis_url, click_body, tmp_path):
    model_dir = tmp_path / "model_data"
    _broken_version(model_dir)
    _point_at(model_dir, "broken", history=("tiny-lite0",))   # made current behind the registry's back
    env = {**backend_env, "MODEL_DIR": str(model_dir), "REDIS_URL": redis_url}
    worker = worker_process(env, "inference", tmp_path / "worker.log").start()
    try:
        worker.wait_rq_worker(redis_url, timeout=120)
        url = serve_http(create_app(make_settings(**env)))
        for _ in range(3):
            answer = requests.post(url + "/predict", json=click_body, timeout=60)
            assert answer.status_code == 200, (answer.text, worker.tail())
            assert answer.json()["results"][0]["model_version"] == "tiny-lite0"
        health = requests.get(url + "/health", timeout=5).json()
        assert health["status"] == "UP"
        assert (health["model_version"], health["current_version"]) == ("tiny-lite0", "broken"), health
        assert any("serves tiny-lite0 instead of the current version broken" in w for w in health["warnings"]), health
        log = (tmp_path / "worker.log").read_text()
        assert log.count("SERVING tiny-lite0 INSTEAD OF THE CURRENT VERSION broken") == 1, worker.tail()
        assert log.count("cannot load the registry's current model version") == 1, worker.tail()
    finally:
        worker.stop()


def test_an_in_process_backend_starts_on_an_earlier_version_and_health_says_so(make_settings, tmp_path, click_body,
                                                                               ls_files):
    model_dir = tmp_path / "model_data"
    _broken_version(model_dir)
    _point_at(model_dir, "broken")                    # no history: the default version serves
    client = create_app(make_settings(MODEL_DIR=str(model_dir), REDIS_URL=None)).test_client()
    health = client.get("/health").get_json()
    assert health["status"] == "UP" and health["model_version"] == "tiny-lite0", health
    assert health["runtimes"]["in-process"]["not_serving"]["version"] == "broken"
    assert any("instead of the current version broken" in w for w in health["warnings"]), health
    assert client.post("/predict", json=click_body).status_code == 200
