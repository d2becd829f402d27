"""Fine-tuning requests: every N new examples request one fine-tuning."""
from __future__ import annotations

import pytest
import redis

from backend.storage.registry import ModelRegistry
from backend.web.app import create_app
from tests.support.learning import annotation_payload, post, wait_job


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
