"""Scheduled fine-tuning: the rq cron registration, which projects are due, and the real scheduler process."""
from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import redis
from rq import Queue

from backend import learning
from backend.bench.harness import ManagedProcess
from backend.labelstudio.annotations import AnnotationRecord
from backend.labelstudio.masks import Instance
from backend.learning import schedule
from backend.storage.examples import ExampleStore
from backend.storage.registry import write_json_atomic


def store_examples(model_dir: Path, project: str, ids: list[int]) -> ExampleStore:
    store = ExampleStore(model_dir / "examples")
    image = np.full((24, 32, 3), 90, np.uint8)
    mask = np.zeros((24, 32), np.uint8)
    mask[5:15, 8:20] = 1
    for ann in ids:
        store.put(AnnotationRecord(project, ann, ann, f"/x/{ann}.png", "t", ()), image, [Instance("r", "Object", mask)])
    return store


def mark_trained(settings, project: str) -> None:
    examples = learning.example_store(settings).examples(project)
    write_json_atomic(learning.training_dir(settings, project) / "state.json",
                      {"trained": {e.key: e.revision for e in examples}, "last_run": None})


@pytest.fixture
def settings(make_settings, redis_url: str, tmp_path: Path):
    return make_settings(MODEL_DIR=str(tmp_path), REDIS_URL=redis_url)


def test_scheduler_registers_the_nightly_job_on_the_training_queue(make_settings, settings) -> None:
    [job] = schedule.build_scheduler(make_settings(MODEL_DIR=settings.model_dir, REDIS_URL=settings.redis_url,
                                               TRAIN_SCHEDULE="30 2 * * *")).get_jobs()
    assert (job.queue_name, job.func_name, job.cron) == ("training", "backend.learning.schedule.scheduled_fine_tune", "30 2 * * *")
    local = job.next_enqueue_time.astimezone()
    assert (local.hour, local.minute) == (2, 30) and job.next_enqueue_time > datetime.now(local.tzinfo)
    [every] = schedule.build_scheduler(settings, interval=60).get_jobs()
    assert every.interval == 60 and every.cron is None


def test_scheduler_needs_redis_and_a_valid_schedule(make_settings, settings) -> None:
    with pytest.raises(ValueError, match="REDIS_URL"):
        schedule.build_scheduler(make_settings(REDIS_URL=None))
    with pytest.raises(ValueError):
        schedule.build_scheduler(settings, schedule="not a schedule")


def test_only_projects_with_new_examples_are_due_and_requested(settings, redis_url: str) -> None:
    model_dir = Path(settings.model_dir)
    store_examples(model_dir, "1", [1, 2])
    store_examples(model_dir, "2", [1, 2])
    mark_trained(settings, "2")
    assert schedule.due_projects(settings) == ["1"]
    store_examples(model_dir, "2", [3])
    assert schedule.due_projects(settings) == ["1", "2"]
    mark_trained(settings, "2")

    result = schedule.scheduled_fine_tune(settings)
    assert list(result["requested"]) == ["1"] and result["requested"]["1"]["reason"] == "schedule"
    again = schedule.scheduled_fine_tune(settings)
    assert again["requested"]["1"]["status"] == "coalesced"
    jobs = Queue("training", connection=redis.Redis.from_url(redis_url)).jobs
    assert [(j.func_name, j.args) for j in jobs] == [("backend.learning.fine_tune", ("1", "schedule"))]


def test_scheduled_job_skips_a_project_without_new_examples(settings, make_settings, tmp_path: Path) -> None:
    local = make_settings(MODEL_DIR=str(tmp_path), REDIS_URL=None)
    store_examples(tmp_path, "1", [1, 2, 3, 4])
    mark_trained(local, "1")
    summary = learning.fine_tune("1", "schedule", local)
    assert summary["status"] == "skipped" and summary["new_examples"] == 0


@pytest.mark.slow
def test_cron_process_enqueues_the_scheduled_job(backend_env: dict, redis_url: str, tmp_path: Path) -> None:
    env = {**backend_env, "REDIS_URL": redis_url, "MODEL_DIR": str(tmp_path)}
    process = ManagedProcess("cron", [sys.executable, "-m", "backend", "cron", "--interval", "1"], env,
                             tmp_path / "cron.log").start()
    queue = Queue("training", connection=redis.Redis.from_url(redis_url))
    try:
        process.wait_until(lambda: any(j.func_name == "backend.learning.schedule.scheduled_fine_tune" for j in queue.jobs),
                           "a scheduled job on the training queue", timeout=120)
    finally:
        process.stop()
    assert process.proc.returncode == 0, f"the scheduler should stop cleanly on SIGTERM:\n{process.tail()}"
