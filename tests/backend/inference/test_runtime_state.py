"""Runtime state per worker in Redis, for /health: published with a lifetime, read back, warnings on fallback."""
from __future__ import annotations

import time

from redis import Redis

from backend.inference.runtime_state import (forget_runtime, publish_runtime, runtime_warnings, served_version,
                                            worker_runtimes)


def test_published_states_are_read_back_and_forgotten(redis_url: str) -> None:
    connection = Redis.from_url(redis_url)
    assert worker_runtimes(connection) == {}
    publish_runtime(connection, "worker-a", {"runtime": "onnxruntime", "model_version": "v1"}, ttl=30)
    publish_runtime(connection, "worker-b", {"runtime": "torch", "model_version": "v1"}, ttl=30)
    assert worker_runtimes(connection) == {"worker-a": {"runtime": "onnxruntime", "model_version": "v1"},
                                           "worker-b": {"runtime": "torch", "model_version": "v1"}}
    forget_runtime(connection, "worker-a")
    assert list(worker_runtimes(connection)) == ["worker-b"]


def test_a_dead_workers_state_expires(redis_url: str) -> None:
    connection = Redis.from_url(redis_url)
    publish_runtime(connection, "short-lived", {"runtime": "torch"}, ttl=1)
    deadline = time.monotonic() + 5
    while worker_runtimes(connection) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker_runtimes(connection) == {}


def test_only_a_fallback_to_torch_is_a_warning() -> None:
    runtimes = {"worker-a": {"runtime": "onnxruntime", "model_version": "v1", "requested": "auto"},
                "web": {"runtime": "torch", "model_version": "v2", "requested": "onnxruntime",
                        "fallback_reason": "artefact check failed"}}
    assert runtime_warnings(runtimes) == [
        "web serves v2 with torch (FCANET_RUNTIME=onnxruntime): artefact check failed"]
    assert runtime_warnings({}) == []


def test_health_names_the_version_served_when_no_process_can_load_the_current_one() -> None:
    stuck = {"model_version": "v1", "not_serving": {"version": "v2", "reason": "truncated checkpoint"}}
    assert served_version("v2", {"w1": stuck, "w2": stuck}) == {"model_version": "v1", "current_version": "v2"}
    assert served_version("v2", {"w1": stuck, "w2": {"model_version": "v2", "not_serving": None}}) == {}
    assert served_version("v2", {"w1": {"model_version": "v1", "not_serving": None}}) == {}  # switches next click
    assert served_version("v2", {}) == {}
