"""Without Redis the web process collects and trains in its background thread."""
from __future__ import annotations

import time

import pytest

from backend import learning
from backend.storage.registry import ModelRegistry
from backend.web.app import create_app
from tests.support.learning import PROJECT, annotation_payload, post


@pytest.mark.slow
def test_without_redis_the_web_process_collects_and_trains_in_the_background(
        make_settings, env, capture, ls_files, horses, tiny_checkpoint) -> None:
    settings = make_settings(**env, REDIS_URL=None)
    client = create_app(settings).test_client()
    for i in range(3):
        assert post(client, annotation_payload(capture, ls_files, horses[i], i + 1))["status"] == "queued"
    start = capture("webhook_start_training")
    start["project"]["id"] = int(PROJECT)
    assert post(client, start)["status"] == "queued"
    registry = ModelRegistry(env["MODEL_DIR"], str(tiny_checkpoint))
    deadline = time.monotonic() + 300
    while registry.current().name == "tiny-lite0":
        assert time.monotonic() < deadline, "no promotion from the background fine-tuning"
        time.sleep(0.5)
    state = learning.load_state(settings, PROJECT)
    assert state["last_run"]["version"] == registry.current().name
    assert sorted(state["trained"]) == ["1-0", "2-0", "3-0"]
