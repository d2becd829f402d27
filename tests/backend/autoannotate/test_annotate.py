"""Auto-annotation: the task claim, and the batch on a real Redis and worker.

The Label Studio task API itself is exercised end to end in ``tests/e2e/test_autoannotate.py``;
here the image routes are served by ``ls_files``, which has no task API, so jobs that ask it for a
task fail the way they would against an unreachable or misconfigured Label Studio.
"""
from __future__ import annotations

import pytest
import redis
from rq import Queue

from backend.autoannotate.annotate import (BatchSummary, TaskJob, TaskOutcome, TaskStatus, claim_key, execute_batch,
                                           task_claim)
from backend.common.errors import BackendError
from backend.labelstudio.client import Credentials
from tests.backend.labelstudio.test_task_prediction import CONFIG


# ------------------------------------------------------------------- batch: real Redis, real worker
def _jobs(task_ids: list[int]) -> list[TaskJob]:
    return [TaskJob(task_id, CONFIG, Credentials()) for task_id in task_ids]


def _summary(mode: str) -> BatchSummary:
    return BatchSummary(project=1, model_version="tiny-lite0", mode=mode, workers=0,
                        outcomes=[TaskOutcome(9, TaskStatus.SKIPPED, "has a prediction of model version tiny-lite0")])


@pytest.mark.slow
def test_queued_batch_reports_every_task_and_never_stops(make_settings, redis_url, start_worker):
    start_worker(queues="batch")
    settings = make_settings(REDIS_URL=redis_url)
    summary = execute_batch(settings, _jobs([1, 2, 3]), _summary("queued"), progress=False)
    assert summary.workers == 1 and summary.pending == []
    report = summary.to_dict()
    assert (report["tasks"], report["done"], report["skipped"], report["failed"]) == (4, 0, 1, 3)
    assert sorted(f["task_id"] for f in report["failures"]) == [1, 2, 3]
    for failure in report["failures"]:  # the file server has no task API: Label Studio's 404
        assert "HTTP 404" in failure["reason"] and f"/api/tasks/{failure['task_id']}" in failure["reason"]
    assert report["skip_reasons"] == {"has a prediction of model version tiny-lite0": 1}
    assert Queue("batch", connection=redis.Redis.from_url(redis_url)).count == 0


def test_task_claim_is_exclusive_and_released_only_by_its_owner(redis_url):
    connection = redis.Redis.from_url(redis_url)
    key = claim_key("http://ls.example", 3)
    with task_claim(connection, key, ttl=30) as first:
        with task_claim(connection, key, ttl=30) as second:
            assert first and not second
        assert connection.exists(key)  # the loser's exit does not release the owner's claim
        assert 0 < connection.ttl(key) <= 30
    assert not connection.exists(key)
    with task_claim(connection, key, ttl=30) as claimed:
        connection.set(key, "a later run's claim")  # ours expired and another run took the task
    assert claimed and connection.get(key) == b"a later run's claim"
    connection.delete(key)


@pytest.mark.slow
def test_queued_job_skips_a_task_another_run_is_annotating(make_settings, redis_url, start_worker):
    start_worker(queues="batch")
    settings = make_settings(REDIS_URL=redis_url)
    connection = redis.Redis.from_url(redis_url)
    busy = claim_key(Credentials.resolve(settings).url, 2)
    connection.set(busy, "another run", ex=60)
    try:
        summary = execute_batch(settings, _jobs([1, 2]), _summary("queued"), progress=False)
        outcomes = {o.task_id: o for o in summary.outcomes}
        assert outcomes[2].status == TaskStatus.SKIPPED and "another auto-annotation run" in outcomes[2].reason
        assert outcomes[1].status == TaskStatus.FAILED  # it ran (the file server has no task API)
        assert connection.get(busy) == b"another run"
        assert not connection.exists(claim_key(Credentials.resolve(settings).url, 1))  # released after the job
    finally:
        connection.delete(busy)


def test_queued_batch_without_worker(make_settings, redis_url):
    settings = make_settings(REDIS_URL=redis_url)
    queue = Queue("batch", connection=redis.Redis.from_url(redis_url))
    with pytest.raises(BackendError, match="no worker serves the batch queue") as err:
        execute_batch(settings, _jobs([1, 2]), _summary("queued"), progress=False)
    assert err.value.status == 503 and queue.count == 0
    summary = execute_batch(settings, _jobs([1, 2]), _summary("queued"), wait=False, progress=False)
    assert summary.pending == [1, 2] and queue.count == 2
    assert [job.args[0]["task_id"] for job in queue.get_jobs()] == [1, 2]
    assert queue.get_jobs()[0].func_name == "backend.autoannotate.annotate_task"


def test_in_process_batch_continues_after_failures(make_settings):
    summary = execute_batch(make_settings(), _jobs([4, 5]), _summary("in-process"), progress=False)
    skipped, failed = TaskStatus.SKIPPED, TaskStatus.FAILED
    assert [(o.task_id, o.status) for o in summary.outcomes] == [(9, skipped), (4, failed), (5, failed)]
    assert all("HTTP 404" in o.reason for o in summary.outcomes[1:])
    assert summary.to_dict()["done"] == 0 and TaskStatus.DONE not in {o.status for o in summary.outcomes}
