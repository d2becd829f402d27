"""Inference through Redis: real Redis, real ``python -m backend worker`` processes, the app's test client."""
from __future__ import annotations

import copy
import pickle
import time

import numpy as np
import pytest
import redis
from rq import Queue
from rq.job import Job

from backend.bench.annotator import brush_mask
from backend.bench.harness import free_port
from backend.cvat.interactor import CvatInteractor
from backend.web.app import create_app
from tests.backend.scenarios.test_bounds import frame_body

UPLOAD = "/data/upload/1/a6b80a50-disc.png"


def with_image(body: dict, image: str) -> dict:
    body = copy.deepcopy(body)
    body["tasks"][0]["data"]["image"] = image
    return body


def add_click(body: dict, x: float, y: float, positive: bool) -> dict:
    body = copy.deepcopy(body)
    region = copy.deepcopy(body["params"]["context"]["result"][0])
    region.update({"id": f"k{x}", "is_positive": positive})
    region["value"].update({"x": x, "y": y})
    body["params"]["context"]["result"].append(region)
    return body


def inference_queue(url: str) -> Queue:
    return Queue("inference", connection=redis.Redis.from_url(url))


# ---------------------------------------------------------------------- no worker needed
def test_redis_down_is_503_at_once_and_health_still_answers(make_settings, click_body, capture):
    client = create_app(make_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")).test_client()
    assert client.get("/health").json["inference"] == "queue"
    assert client.post("/setup", json=capture("setup")).status_code == 200
    started = time.monotonic()
    response = client.post("/predict", json=click_body)
    assert response.status_code == 503, response.json
    assert "Redis" in response.json["detail"] and "unavailable" in response.json["detail"]
    assert time.monotonic() - started < 10
    assert "fcanet_queue_up 0.0" in client.get("/metrics").get_data(as_text=True)


def test_the_web_process_never_loads_a_model_with_redis(make_settings, redis_url, tmp_path, capture):
    settings = make_settings(REDIS_URL=redis_url, FCANET_CHECKPOINT=str(tmp_path / "not-there.pt"),
                             MODEL_DIR=str(tmp_path / "model_data"))
    client = create_app(settings).test_client()      # loading the absent checkpoint would raise
    assert client.get("/health").json["model_version"] == "not-there"
    assert client.post("/setup", json=capture("setup")).json == {"model_version": "not-there"}


def test_without_a_worker_the_click_times_out_with_504_and_leaves_the_queue(make_settings, redis_url, click_body):
    client = create_app(make_settings(REDIS_URL=redis_url, PREDICT_TIMEOUT="2")).test_client()
    response = client.post("/predict", json=click_body)
    assert response.status_code == 504
    assert "no worker started job" in response.json["detail"]
    assert inference_queue(redis_url).count == 0


# ------------------------------------------------------------------------ with workers
@pytest.mark.slow
def test_queued_click_gives_the_in_process_answer(make_settings, redis_url, start_worker, click_body, ls_files):
    start_worker()
    queued = create_app(make_settings(REDIS_URL=redis_url)).test_client()
    local = create_app(make_settings()).test_client()
    for body in (click_body, add_click(add_click(click_body, 20, 30, False), 70, 60, True)):
        a, b = queued.post("/predict", json=body), local.post("/predict", json=body)
        assert a.status_code == b.status_code == 200, (a.json, b.json)
        (pa,), (pb,) = a.json["results"], b.json["results"]
        np.testing.assert_array_equal(brush_mask(pa["result"][0]), brush_mask(pb["result"][0]))
        assert pa["model_version"] == pb["model_version"] == "tiny-lite0"
        assert pa["score"] == pytest.approx(pb["score"], abs=1e-6)
    # the job carried a reference to the image and the credentials to fetch it, not the image
    registry = inference_queue(redis_url).finished_job_registry
    job = Job.fetch(registry.get_job_ids()[0], connection=redis.Redis.from_url(redis_url))
    (payload,) = job.args
    assert payload["image"] == UPLOAD and payload["task_id"] == 1
    assert payload["credentials"] == {"url": ls_files.url, "api_key": ls_files.token, "trusted": True}
    assert len(pickle.dumps(payload)) < 2000
    # an image problem in the worker comes back with the worker's status and detail
    missing = queued.post("/predict", json=with_image(click_body, "/data/upload/1/missing.png"))
    assert missing.status_code == 404 and "no image at" in missing.json["detail"]


@pytest.mark.slow
def test_a_job_over_job_timeout_is_504(make_settings, redis_url, start_worker):
    many = {"MAX_CLICKS": "100000", "FCANET_SHORT_SIDE": "352"}
    start_worker(many)
    interactor = CvatInteractor(make_settings(REDIS_URL=redis_url, JOB_TIMEOUT="1", **many))
    status, text = interactor.answer(frame_body(352, 352, [[10 + i % 300, 10 + i % 290] for i in range(60000)]))
    assert status == 504, text                             # 60 000 click maps take far longer than 1 s
    assert "JOB_TIMEOUT=1s" in text
