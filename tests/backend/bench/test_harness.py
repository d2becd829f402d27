"""``backend.bench.harness.claim_redis_db`` against a real Redis: which dbs a run may take."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import redis

from backend.bench.harness import REDIS_OWNER_KEY, claim_redis_db, release_redis_db

SERVER = os.environ.get("FCANET_TEST_REDIS", "redis://127.0.0.1:6379").rstrip("/")


@pytest.fixture
def free_db() -> str:
    """A db claimed by this test process, then marked as claimed by a process that has exited."""
    url = claim_redis_db(SERVER)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with redis.Redis.from_url(url) as conn:
        conn.set(REDIS_OWNER_KEY, f"{socket.gethostname()}:{gone.pid}")
    yield url
    release_redis_db(url)


def test_a_db_whose_owner_is_gone_is_claimed_again(free_db: str) -> None:
    assert claim_redis_db(free_db) == free_db
    with redis.Redis.from_url(free_db) as conn:
        assert conn.get(REDIS_OWNER_KEY).decode().endswith(f":{os.getpid()}")


def test_a_db_still_used_by_a_connection_is_not_claimed(free_db: str) -> None:
    leftover = redis.Redis.from_url(free_db)  # e.g. a worker that outlived the run that claimed the db
    leftover.ping()
    with pytest.raises(ValueError, match="in use"):
        claim_redis_db(free_db)
    leftover.close()
    assert claim_redis_db(free_db) == free_db
