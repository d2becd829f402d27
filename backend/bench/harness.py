"""Process, Redis-db, image-server and report helpers shared by the benchmarks and the tests.

:class:`ManagedProcess` runs a child process in a session of its own with its output in a log
file; :func:`web_process` and :func:`worker_process` build the backend's two processes;
:func:`claim_redis_db` gives a caller a Redis db of its own; :class:`ImageServer` serves a folder
over HTTP on loopback.
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import redis
import requests

from fcanet_core.cli import free_port  # noqa: F401  (the port helper of the harness's users)

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The shared data folder: ``$FCANET_SHARED`` (``../shared`` beside the repository by default).
SHARED = Path(os.environ.get("FCANET_SHARED", REPO_ROOT.parent / "shared"))
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
#: Redis dbs :func:`claim_redis_db` picks from when given a server URL.
CLAIMABLE_DBS = tuple(range(15, 7, -1))
#: Key marking a claimed db, holding ``host:pid`` of the claiming process.
REDIS_OWNER_KEY = "fcanet:claimed-by"
STARTUP_TIMEOUT_S = 240.0


# ----------------------------------------------------------------------------- processes

@dataclass
class ManagedProcess:
    """A child process in a session of its own, its output going to ``log_path``."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None

    def start(self) -> "ManagedProcess":
        """Start the process (in the repository root)."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=REPO_ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Poll ``ready()`` until true.

        Raises:
            RuntimeError: with the log tail, when the process exits or ``timeout`` passes first.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before {what}:\n{self.tail()}")
            try:
                if ready():
                    return
            except (requests.RequestException, redis.RedisError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name}: no {what} within {timeout:.0f} s:\n{self.tail()}")

    def wait_http(self, url: str, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Wait until ``GET url`` answers 200."""
        self.wait_until(lambda: requests.get(url, timeout=2).status_code == 200, f"answer at {url}", timeout)

    def wait_rq_worker(self, redis_url: str, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Wait until this process is registered as an RQ worker in ``redis_url``."""
        from rq import Worker

        conn = redis.Redis.from_url(redis_url)
        self.wait_until(lambda: any(w.pid == self.proc.pid for w in Worker.all(connection=conn)),
                        "worker registration in Redis", timeout)

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)

    def tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(log unreadable: {exc})"


def web_process(env: dict[str, str], port: int, log_path: Path, threads: int = 8) -> ManagedProcess:
    """gunicorn serving ``backend._wsgi:app`` on 127.0.0.1:``port`` (not started yet)."""
    return ManagedProcess("web", [
        sys.executable, "-m", "gunicorn", "backend._wsgi:app", "--bind", f"127.0.0.1:{port}",
        "--workers", "1", "--threads", str(threads), "--timeout", "120",
    ], env, log_path)


def worker_process(env: dict[str, str], queues: str, log_path: Path) -> ManagedProcess:
    """``python -m backend worker --queues QUEUES`` (not started yet)."""
    return ManagedProcess(f"worker[{queues}]", [sys.executable, "-m", "backend", "worker", "--queues", queues],
                          env, log_path)


# ---------------------------------------------------------------------------- Redis dbs

def _owner_alive(stamp: str) -> bool:
    """Whether the process that wrote ``stamp`` (``host:pid``) still runs (other hosts: assumed)."""
    host, _, pid = stamp.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def _usable(conn: redis.Redis, db: int) -> bool:
    """Whether ``db`` (``conn``'s) may be claimed: see :func:`claim_redis_db`."""
    owner = conn.get(REDIS_OWNER_KEY)
    if owner is not None and _owner_alive(owner.decode()):
        return False
    own = conn.client_id()
    if any(int(client["db"]) == db and int(client["id"]) != own for client in conn.client_list()):
        return False  # e.g. a worker that outlived the run that claimed the db
    return owner is not None or conn.dbsize() == 0


def claim_redis_db(url: str) -> str:
    """Claim a Redis db for this process: emptied, and marked with :data:`REDIS_OWNER_KEY`.

    ``url`` names a server (``redis://host:port``: the first usable db of :data:`CLAIMABLE_DBS`)
    or one db (``redis://host:port/N``). A db is usable when no other connection uses it and it is
    empty or was claimed by a process that is gone; a db holding someone else's keys, claimed by a
    live process, or still used by a connection (a worker that outlived its owner) is not.

    Returns:
        The URL of the claimed db; :func:`release_redis_db` empties it again.

    Raises:
        ValueError: Redis does not answer, or no db is usable.
    """
    parts = urlsplit(url)
    path = parts.path.strip("/")
    server = urlunsplit(parts._replace(path="", query="", fragment="")).rstrip("/")
    dbs = [int(path)] if path else list(CLAIMABLE_DBS)
    stamp = f"{socket.gethostname()}:{os.getpid()}"
    try:
        for db in dbs:
            with redis.Redis.from_url(f"{server}/{db}", socket_connect_timeout=2) as conn:
                if _usable(conn, db) and conn.flushdb() and conn.set(REDIS_OWNER_KEY, stamp, nx=True):
                    return f"{server}/{db}"
    except redis.RedisError as exc:
        raise ValueError(f"Redis does not answer at {server}: {exc}") from None
    raise ValueError(f"no usable Redis db at {server} among {dbs}: each holds other data or is in use")


def release_redis_db(url: str) -> None:
    """Empty a db claimed with :func:`claim_redis_db`."""
    with redis.Redis.from_url(url) as conn:
        conn.flushdb()

# ------------------------------------------------------------------------------- images

class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        logger.debug("image server: " + format, *args)


@dataclass
class ImageServer:
    """Serves a folder over HTTP on 127.0.0.1 from a background thread (a context manager)."""

    root: Path
    port: int = 0
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)

    def __enter__(self) -> "ImageServer":
        handler = functools.partial(_QuietHandler, directory=str(self.root))
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="image-server", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: Path) -> str:
        """The URL of a file inside the root."""
        return f"http://127.0.0.1:{self.port}/{path.relative_to(self.root).as_posix()}"


# ----------------------------------------------------------------------------- reports

def bench_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """A benchmark's command line, described by the first paragraph of ``doc``, with ``--json OUT``."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the report here")
    return parser
