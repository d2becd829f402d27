"""The Redis owner lock (real Redis) and the file lock."""
from __future__ import annotations

import time
from pathlib import Path

import redis

from backend.common.locks import FileLock, OwnerLock


def test_owner_lock_is_exclusive_and_only_its_owner_extends_or_releases_it(redis_url):
    connection = redis.Redis.from_url(redis_url)
    first, second = OwnerLock(connection, "fcanet:test:lock", 30), OwnerLock(connection, "fcanet:test:lock", 30)
    assert first.try_acquire() and not second.try_acquire()
    assert not second.acquire(wait_s=0.1)
    assert not second.extend() and not second.release() and connection.exists("fcanet:test:lock")
    assert first.extend() and first.release() and not connection.exists("fcanet:test:lock")
    assert second.acquire(wait_s=0.1) and second.release()


def test_an_expired_owner_lock_is_taken_and_its_old_owner_cannot_free_it(redis_url):
    connection = redis.Redis.from_url(redis_url)
    old, new = OwnerLock(connection, "fcanet:test:expiring", 1), OwnerLock(connection, "fcanet:test:expiring", 30)
    assert old.try_acquire()
    connection.expire("fcanet:test:expiring", 0)
    assert new.try_acquire() and not old.release() and not old.extend()
    assert new.release()


def test_file_lock_waits_or_gives_up_and_frees_on_release(tmp_path: Path):
    path = tmp_path / "sub" / "lock"
    with FileLock(path):
        other = FileLock(path)
        started = time.monotonic()
        assert not other.acquire(wait_s=0.2) and time.monotonic() - started >= 0.2
    assert other.acquire(wait_s=0) and path.is_file()
    other.release()
