"""Resident workers: a killed worker is detected by the waiting click, a promoted version is picked up."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import fcanet_core
from rq.job import Job
from backend.bench.annotator import brush_mask
from backend.inference.image_waits import HELD_BY
from backend.storage.registry import ModelRegistry
from backend.web.app import create_app
from tests.backend.inference.test_queueing import inference_queue, with_image


@pytest.mark.slow
def test_a_killed_worker_fails_the_click_and_a_restarted_worker_answers(make_settings, redis_url, start_worker,
                                                                        click_body):
    worker = start_worker()
    client = create_app(make_settings(REDIS_URL=redis_url, PREDICT_TIMEOUT="40")).test_client()
    answers: list = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: answers.append(
        client.post("/predict", json=with_image(click_body, "/slow/8/1/a6b80a50-disc.png"))))
    thread.start()
    queue = inference_queue(redis_url)
    deadline = time.monotonic() + 30

    def held() -> bool:
        """The worker took the job: it runs it, or holds it while its slow image downloads."""
        if queue.started_job_registry.count:
            return True
        ids = [key.decode()[len("rq:job:"):] for key in queue.connection.scan_iter("rq:job:*")]
        return any(job is not None and job.meta.get(HELD_BY) for job in Job.fetch_many(ids, queue.connection))
    while not held() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert held(), "the worker never took the job"
    os.killpg(worker.proc.pid, signal.SIGKILL)
    thread.join(timeout=40)
    (response,) = answers
    assert response.status_code == 503, response.json
    assert "stopped sending heartbeats" in response.json["detail"]
    assert time.monotonic() - started < 30           # well within PREDICT_TIMEOUT
    start_worker()
    response = client.post("/predict", json=click_body)
    assert response.status_code == 200, response.json
    assert brush_mask(response.json["results"][0]["result"][0]).shape == (240, 320)


@pytest.mark.slow
def test_the_worker_switches_to_a_promoted_version(make_settings, redis_url, start_worker, click_body, tmp_path,
                                                   tiny_checkpoint):
    model_dir = str(tmp_path / "model_data")
    start_worker({"MODEL_DIR": model_dir})
    client = create_app(make_settings(REDIS_URL=redis_url, MODEL_DIR=model_dir)).test_client()
    first = client.post("/predict", json=click_body).json["results"][0]
    assert first["model_version"] == "tiny-lite0"
    model = fcanet_core.load_model(tiny_checkpoint)
    with torch.no_grad():
        next(p for p in model.parameters() if p.dim() > 1).mul_(-1.0)
    registry = ModelRegistry(model_dir, str(tiny_checkpoint))
    registry.add_candidate(model, name="tiny-v2", parent="tiny-lite0", data={}, metrics={})
    registry.promote("tiny-v2")
    assert client.get("/health").json["model_version"] == "tiny-v2"
    second = client.post("/predict", json=click_body).json["results"][0]
    assert second["model_version"] == "tiny-v2"
    assert not np.array_equal(brush_mask(first["result"][0]), brush_mask(second["result"][0]))


def _promote_flipped(registry: ModelRegistry, tiny_checkpoint, name: str, parent: str) -> Path:
    """Store and promote a changed copy of the tiny model; returns its version folder."""
    model = fcanet_core.load_model(tiny_checkpoint)
    with torch.no_grad():
        next(p for p in model.parameters() if p.dim() > 1).mul_(-1.0)
    registry.add_candidate(model, name=name, parent=parent, data={}, metrics={})
    return registry.versions_dir / name


@pytest.mark.slow
def test_a_promoted_version_is_served_through_its_onnx_artefact_within_one_click(make_settings, redis_url,
                                                                                 start_worker, click_body, tmp_path,
                                                                                 tiny_checkpoint):
    model_dir = str(tmp_path / "model_data")
    worker = start_worker({"MODEL_DIR": model_dir})
    client = create_app(make_settings(REDIS_URL=redis_url, MODEL_DIR=model_dir)).test_client()
    assert client.post("/predict", json=click_body).json["results"][0]["model_version"] == "tiny-lite0"
    registry = ModelRegistry(model_dir, str(tiny_checkpoint))
    folder = _promote_flipped(registry, tiny_checkpoint, "tiny-v2", "tiny-lite0")
    assert (folder / "model.onnx").is_file()                    # exported when the version was stored
    registry.promote("tiny-v2")
    assert client.post("/predict", json=click_body).json["results"][0]["model_version"] == "tiny-v2"
    (state,) = client.get("/health").json["runtimes"].values()
    assert state == {"model_version": "tiny-v2", "requested": "auto", "runtime": "openvino",
                     "artefact": str(folder / "model.onnx"), "fallback_reason": None, "not_serving": None}

    folder = _promote_flipped(registry, tiny_checkpoint, "tiny-v3", "tiny-v2")
    (folder / "model.onnx").chmod(0o644)
    (folder / "model.onnx").write_bytes(b"not an onnx model")   # a broken artefact
    registry.promote("tiny-v3")
    answer = client.post("/predict", json=click_body)
    assert answer.status_code == 200 and answer.json["results"][0]["model_version"] == "tiny-v3"
    health = client.get("/health").json
    (state,) = health["runtimes"].values()
    assert state["model_version"] == "tiny-v3" and state["runtime"] == "torch"
    assert "cannot load" in state["fallback_reason"]
    assert any("serves tiny-v3 with torch" in w for w in health["warnings"])
    assert "falling back to the torch runtime" in worker.log_path.read_text()
