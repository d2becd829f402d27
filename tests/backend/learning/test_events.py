"""Webhook events → learning jobs: bad bodies, and examples stored, updated and removed by a real worker."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import redis
from rq import Queue
from rq.job import JobStatus

from backend.storage.examples import ExampleStore
from backend.web.app import create_app
from tests.support.learning import PROJECT, annotation_payload, post, wait_job


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
