"""The backend's two locks: a Redis owner lock and a file lock.

* :class:`OwnerLock`: ``SET key token NX EX ttl``; only the owner's token extends it and only the
  owner deletes it (compare-and-delete), so a lock that expired and was taken by another process is
  never touched. Used by the training lock and by the auto-annotation task claim.
* :class:`FileLock`: an exclusive ``flock`` on a file; the kernel frees it when the process dies.
  Used by the example store, the model registry and the training lock without Redis.
"""
from __future__ import annotations

import fcntl
import time
import uuid
from pathlib import Path
from typing import IO, Any

from redis import Redis

#: Lua: delete a key only while it still holds the caller's value.
_DELETE_IF_VALUE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
#: Lua: extend a key only while it still holds the caller's value.
_EXPIRE_IF_VALUE = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) "
                    "end return 0")


def delete_if_value(connection: Redis, key: str, value: str) -> bool:
    """Delete ``key`` atomically if it still holds ``value`` (a lock or marker owned by the caller)."""
    return bool(connection.eval(_DELETE_IF_VALUE, 1, key, value))


class OwnerLock:
    """A Redis key held by one owner for ``ttl`` seconds at a time.

    Args:
        connection: the Redis connection.
        key: the lock's key.
        ttl: seconds the key lives unless :meth:`extend` renews it (a killed owner frees it then).
    """

    def __init__(self, connection: Redis, key: str, ttl: int) -> None:
        self.connection, self.key, self.ttl = connection, key, max(1, int(ttl))
        self.token = uuid.uuid4().hex

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True when this owner holds it now."""
        return bool(self.connection.set(self.key, self.token, nx=True, ex=self.ttl))

    def acquire(self, wait_s: float) -> bool:
        """Take the lock, waiting up to ``wait_s`` seconds for it; False when it stayed taken."""
        deadline = time.monotonic() + wait_s
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(1.0, self.ttl / 4))
        return True

    def extend(self) -> bool:
        """Renew the TTL; False when the lock is no longer this owner's."""
        return bool(self.connection.eval(_EXPIRE_IF_VALUE, 1, self.key, self.token, self.ttl))

    def release(self) -> bool:
        """Delete the lock if it is still this owner's; True when it was."""
        return delete_if_value(self.connection, self.key, self.token)


class FileLock:
    """An exclusive ``flock`` on ``path`` (created with its folder); ``with`` waits for it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self, wait_s: float | None = None) -> bool:
        """Take the lock; ``wait_s=None`` waits as long as it takes, else False after ``wait_s`` s."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a")
        if wait_s is None:
            fcntl.flock(self._file, fcntl.LOCK_EX)
            return True
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self._file.close()
                    self._file = None
                    return False
                time.sleep(1.0)

    def release(self) -> None:
        """Free the lock."""
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
