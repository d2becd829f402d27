"""Real faults for the backend tests: a private Redis that restarts without its data, a full disk.

``PrivateRedis``: a ``redis-server`` of the test's own on a free port, without persistence (as
``scripts/serve.sh`` starts it), that can be killed and started again empty on the same port.
``FullDisk``: a small tmpfs mounted on a folder (the tests run as root), filled to the last byte by
``fill()`` and given space back by ``free()``; unmounted afterwards.
"""
from __future__ import annotations

import errno
import os
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest
import redis

from backend.bench.harness import free_port


class PrivateRedis:
    """A redis-server of this test's own that can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping()
                return
            except redis.RedisError:
                assert time.monotonic() < deadline, "private redis-server did not start"
                time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def restart_empty(self) -> None:
        """Kill the server and start it again: every key (queues, jobs, workers) is gone."""
        self.kill()
        self.start()
        assert redis.Redis.from_url(self.url).dbsize() == 0


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.kill()


class FullDisk:
    """A tmpfs of ``size`` mounted on ``path``; :meth:`fill` leaves no byte free, :meth:`free` undoes it."""

    def __init__(self, path: Path, size: str = "4m") -> None:
        self.path, self.size = path, size
        self.filler = path / ".filler"

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.path)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs to make a full disk (needs root): {result.stderr.strip()}")

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for chunk in (b"\0" * 65536, b"\0" * 4096, b"\0"):     # down to the last byte
                try:
                    while True:
                        os.write(fd, chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def full_disk_at() -> Iterator:
    """``full_disk_at(path, size="4m") -> FullDisk``: a mounted (not yet filled) tmpfs at ``path``."""
    disks: list[FullDisk] = []

    def mount(path: Path, size: str = "4m") -> FullDisk:
        disk = FullDisk(Path(path), size)
        disk.mount()
        disks.append(disk)
        return disk

    yield mount
    for disk in reversed(disks):
        disk.unmount()


def space_left(path: Path) -> int:
    """Bytes free on the file system of ``path``."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize
