"""Runtime state per worker in Redis, for /health: published with a lifetime, read back, warnings on fallback."""
from __future__ import annotations

import time

from redis import Redis

from backend.inference.runtime_state import forget_runtime, publish_runtime, runtime_warnings, worker_runtimes


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
