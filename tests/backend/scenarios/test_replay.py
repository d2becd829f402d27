"""Every request captured from a real Label Studio 1.23.2, replayed against the app.

Task images are fetched over real HTTP from the file server standing in for Label Studio
(``ls_files``, set as ``LABEL_STUDIO_URL`` in place of the captured ``http://localhost:18080``),
which serves real images at exactly the paths the captures reference.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import redis
from rq import Queue

from backend.bench.annotator import brush_mask
from backend.web.app import create_app


@pytest.fixture(scope="module")
def captures(reference_dir: Path) -> list[str]:
    names = sorted(p.stem for p in (reference_dir / "labelstudio").glob("*.json"))
    assert names, "no captured requests found"
    return names


def test_every_capture_kind_is_replayed(captures):
    handled = ("health", "setup", "predict_", "webhook_", "train_")
    assert all(name.startswith(handled) for name in captures), captures


@pytest.fixture
def client(make_settings):
    """The in-process app with the image cache off, so every replay downloads its image."""
    return create_app(make_settings(IMAGE_CACHE_SIZE="0")).test_client()


def test_health(client, capture):
    assert capture("health") is None                  # GET without a body
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json["status"] == "UP" and response.json["model_class"] == "FCANetBackend"


def test_setup(client, capture):
    response = client.post("/setup", json=capture("setup"))
    assert response.status_code == 200 and response.json == {"model_version": "tiny-lite0"}


@pytest.mark.parametrize("name, image_path", [
    ("predict_interactive_pos", "/data/upload/1/a6b80a50-disc.png"),
    ("predict_interactive_pos_neg_localfiles", "/data/local-files/?d=ds1/disc2.png"),
])
def test_interactive_predictions(client, capture, ls_files, name, image_path):
    body = capture(name)
    before = ls_files.count(image_path)
    response = client.post("/predict", json=body)
    assert response.status_code == 200, response.json
    (prediction,) = response.json["results"]
    assert prediction["model_version"] == "tiny-lite0"
    (region,) = prediction["result"]
    assert (region["type"], region["from_name"], region["to_name"]) == ("brushlabels", "tag", "image")
    assert region["value"]["brushlabels"] == ["Object"]
    assert brush_mask(region).shape == (240, 320)
    assert ls_files.count(image_path) == before + 1
    assert ls_files.requests[-1] == ("GET", image_path, f"Token {ls_files.token}")


@pytest.mark.parametrize("name", ["predict_regular_dm_action", "predict_on_task_open", "predict_test_random"])
def test_predictions_without_context_are_none_per_task(client, capture, name):
    body = capture(name)
    response = client.post("/predict", json=body)
    assert response.status_code == 200
    assert response.json["results"] == [[]] * len(body["tasks"])    # no prediction: Label Studio stores none


def test_legacy_train_route_is_not_served(client, capture):
    response = client.post("/train", json=capture("train_legacy_flag_off"))
    assert response.status_code == 404 and response.json["status"] == 404


@pytest.mark.parametrize("name, status, training_jobs", [
    ("webhook_annotation_created", "queued", 1),
    ("webhook_annotation_updated", "queued", 1),
    ("webhook_start_training", "queued", 1),
    ("webhook_tasks_created", "ignored", 0),
])
def test_webhooks_answer_at_once_and_only_enqueue(make_settings, redis_url, capture, name, status, training_jobs):
    client = create_app(make_settings(REDIS_URL=redis_url)).test_client()
    body = capture(name)
    response = client.post("/webhook", json=body)
    assert response.status_code == 201, response.json
    assert response.json["status"] == "ok"
    assert response.json["result"]["event"] == body["action"] and response.json["result"]["status"] == status
    assert Queue("training", connection=redis.Redis.from_url(redis_url)).count == training_jobs
