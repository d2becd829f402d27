"""The fine-tuning job with real Redis and workers: coalesced requests, promotion, a killed trainer, the time budget."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.job import JobStatus

from backend import learning
from backend.storage.registry import ModelRegistry
from fcanet_core import load_model
from fcanet_core.inference.predictor import model_input_short_side
from tests.support.learning import PROJECT, four_examples_and_start, post, put_examples, wait_job


@pytest.mark.slow
def test_start_training_coalesces_and_promotes_the_candidate(
        make_settings, env, redis_url, capture, horses, start_worker, tiny_checkpoint) -> None:
    model_dir, client, start = four_examples_and_start(make_settings, env, redis_url, capture, horses)
    first, second = post(client, start), post(client, start)
    assert (first["status"], second["status"]) == ("queued", "coalesced")
    assert first["job_id"] == second["job_id"]
    connection = redis.Redis.from_url(redis_url)
    assert Queue("training", connection=connection).count == 1

    start_worker(env, queues="training")
    job = wait_job(connection, first["job_id"])
    assert job.get_status() == JobStatus.FINISHED, job.latest_result().exc_string
    summary = job.return_value()
    assert summary["status"] == "promoted" and summary["parent"] == "tiny-lite0", summary["gate"]["why"]
    assert summary["gate"]["promote"] and summary["gate"]["guard"]["n"] == 24
    assert summary["train_examples"] + summary["holdout_examples"] == 4
    registry = ModelRegistry(model_dir, str(tiny_checkpoint))
    assert registry.current().name == summary["version"]
    meta = registry.metadata(summary["version"])
    assert meta["parent"] == "tiny-lite0" and meta["accepted"] is True
    assert meta["metrics"]["baseline"]["noc90"] == summary["metrics"]["before"]["noc90"]
    assert meta["metrics"]["gate"] == summary["gate"] and "scores" not in meta["metrics"]
    assert sorted(meta["data"]["train_keys"] + meta["data"]["holdout_keys"]) == ["1-0", "2-0", "3-0", "4-0"]
    assert meta["recipe"]["max_steps"] == 2 and meta["recipe"]["reason"] == "start_training"
    scale = model_input_short_side(load_model(tiny_checkpoint))
    assert meta["recipe"]["short_side"] == meta["input_short_side"] == scale, "trained and served at the parent's scale"
    assert model_input_short_side(load_model(registry.current().checkpoint)) == scale
    state = learning.load_state(make_settings(**env), PROJECT)
    assert sorted(state["trained"]) == ["1-0", "2-0", "3-0", "4-0"]
    assert not any((model_dir / "training" / PROJECT / "runs").iterdir())
    again = post(client, start)
    assert again["status"] == "queued", "a finished job no longer absorbs new requests"
    assert again["last_run"]["version"] == summary["version"] and again["last_run"]["why"] == summary["gate"]["why"]
    rerun = wait_job(connection, again["job_id"]).return_value()
    assert (rerun["status"], rerun["new_examples"]) == ("skipped", 0), "nothing new: no second training"
    assert registry.current().name == summary["version"]


@pytest.mark.slow
def test_killed_trainer_leaves_the_model_fails_the_job_frees_the_lock_and_a_rerun_works(
        make_settings, env, redis_url, capture, horses, start_worker, tiny_checkpoint) -> None:
    model_dir, client, start = four_examples_and_start(make_settings, env, redis_url, capture, horses)
    connection = redis.Redis.from_url(redis_url)
    registry = ModelRegistry(model_dir, str(tiny_checkpoint))
    default_bytes = tiny_checkpoint.read_bytes()

    doomed = post(client, start)["job_id"]
    worker = start_worker({**env, "FINETUNE_STEPS": "100000"}, queues="training")
    lock = f"{learning.KEY_PREFIX}:{PROJECT}:lock"
    runs = model_dir / "training" / PROJECT / "runs"
    deadline = time.monotonic() + 180
    while not (connection.exists(lock) and any(runs.glob("*/run"))):
        assert time.monotonic() < deadline, worker.tail()
        time.sleep(0.2)
    time.sleep(2)  # training steps are running
    os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait(timeout=30)

    assert registry.current().name == "tiny-lite0"
    assert [v.name for v in registry.list()] == ["tiny-lite0"]
    assert tiny_checkpoint.read_bytes() == default_bytes
    deadline = time.monotonic() + 30
    while connection.exists(lock):
        assert time.monotonic() < deadline, "the killed trainer's lock did not expire"
        time.sleep(0.3)

    start_worker(env, queues="training")  # its start-up maintenance finds the abandoned job
    assert wait_job(connection, doomed, timeout=60).get_status() == JobStatus.FAILED
    rerun = post(client, start)
    assert rerun["status"] == "queued" and rerun["job_id"] != doomed
    summary = wait_job(connection, rerun["job_id"]).return_value()
    assert summary["status"] == "promoted"
    assert registry.current().name == summary["version"]
    assert [p.name for p in runs.iterdir()] == []


def test_time_budget_ends_the_run_early_and_still_yields_a_candidate(
        make_settings, env, horses, tiny_checkpoint) -> None:
    settings = make_settings(**{**env, "FINETUNE_STEPS": "100000", "FINETUNE_TIME_BUDGET": "0.01"}, REDIS_URL=None)
    put_examples(Path(env["MODEL_DIR"]), horses[:3], [1, 2, 3])
    summary = learning.fine_tune(PROJECT, "manual", settings)
    meta = ModelRegistry(env["MODEL_DIR"], str(tiny_checkpoint)).metadata(summary["version"])
    assert summary["status"] == "promoted" and meta["recipe"]["time_budget_s"] == 0.01
    assert 1 <= meta["steps"] < 100000, "the budget, not the step count, ended the run"


def test_versions_list_shows_the_gate_decision(make_settings, env, horses, tiny_checkpoint) -> None:
    settings = make_settings(**env, REDIS_URL=None)
    put_examples(Path(env["MODEL_DIR"]), horses[:3], [1, 2, 3])
    summary = learning.fine_tune(PROJECT, "manual", settings)
    listed = subprocess.run([sys.executable, "-m", "backend", "versions", "list"], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=120, check=True)
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["tiny-lite0"]["decision"] is None
    decision = rows[summary["version"]]["decision"]
    assert decision == {"promote": True, "verdict": "inconclusive", "why": summary["gate"]["why"]}
    gate = rows[summary["version"]]["metrics"]["gate"]
    assert gate["project"]["n"] == summary["holdout_examples"] and gate["guard"]["n"] == 24
    assert {"noc85", "noc90", "miou_1", "miou_k"} <= set(gate["guard_set"]["before"]) and "not worse" in decision["why"]
