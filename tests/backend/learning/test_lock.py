"""The training lock: one fine-tuning per project, a file lock without Redis, a heartbeat-renewed key with it."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from redis import Redis

from backend.config import Settings
from backend.learning.lock import TrainingBusy, training_lock
from backend.learning.state import lock_key


def _settings(model_dir: Path, redis_url: str | None = None, lock_ttl: int = 60) -> Settings:
    base = Settings()
    learning = dataclasses.replace(base.learning, job_timeout=1, lock_ttl=lock_ttl)
    return dataclasses.replace(base, model_dir=str(model_dir), redis_url=redis_url, learning=learning)


def test_without_redis_a_second_fine_tuning_of_the_project_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with training_lock(settings, "7") as lost:
        assert not lost.is_set()
        with pytest.raises(TrainingBusy, match="project 7: another fine-tuning held the lock for 1s") as caught:
            with training_lock(settings, "7"):
                pass
        assert caught.value.status == 409
        with training_lock(settings, "8"):  # other projects train meanwhile
            pass
    with training_lock(settings, "7"):  # free again
        pass


def test_with_redis_the_heartbeat_keeps_the_lock_and_notices_when_it_is_lost(redis_url: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, redis_url, lock_ttl=2)
    connection = Redis.from_url(redis_url)
    key = lock_key("7")
    with training_lock(settings, "7") as lost:
        time.sleep(3)  # longer than the TTL: only the heartbeat keeps the key
        assert connection.exists(key) and not lost.is_set()
        with pytest.raises(TrainingBusy):
            with training_lock(settings, "7"):
                pass
        connection.set(key, "someone else")
        assert lost.wait(5)
    assert connection.get(key) == b"someone else"  # a lock that is not ours is left alone
    connection.delete(key)
    with training_lock(settings, "7"):
        pass
    assert not connection.exists(key)
