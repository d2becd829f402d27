"""Fixtures of the backend tests: real Redis, a real HTTP server in Label Studio's place, a tiny model.

Session fixtures
    ``tiny_checkpoint`` -> Path
        A random-weights ``lite0`` project checkpoint (seeded Kaiming init, so masks depend on image
        and clicks); its registry version name is ``tiny-lite0``.
    ``ls_files`` -> :class:`LabelStudioFiles`
        A real HTTP server on 127.0.0.1 that serves files the way Label Studio does: ``/data/upload/…``
        and ``/data/local-files/?d=…`` (token required), ``/tasks/<id>/presign/?fileuri=…`` (redirects
        to ``/storage/…`` on ``.other_url``, which refuses requests carrying a token), ``/public/…`` (no
        token), ``/slow/<seconds>/<upload path>``, ``/drip/<seconds per byte>/<upload path>`` (the whole
        file announced, then one byte at a time), and ``POST /api/token/refresh/`` (PAT → access token).
        The images at the paths of the captured requests are real GrabCut images resized to 320×240.
    ``redis_server_db`` -> str
        A Redis db claimed for this session (``backend.bench.harness.claim_redis_db``; ``$FCANET_TEST_REDIS``
        names the server, default ``redis://127.0.0.1:6379``).

Function fixtures
    ``redis_url`` -> str: that db, emptied before and after the test.
    ``backend_env`` -> dict: environment of a backend configured against ``ls_files`` with the tiny model.
    ``make_settings(**env) -> Settings``: :class:`Settings` from ``backend_env`` updated with ``env``
        (a value of ``None`` removes the variable).
    ``start_worker(env=None, queues="inference") -> ManagedProcess``: a real ``python -m backend worker``
        subprocess with ``backend_env`` (+ ``env``), registered in Redis; stopped after the test.
    ``capture(name) -> dict``: a request body captured from a real Label Studio.
    ``click_body`` -> dict: the captured interactive request (one positive keypoint at the centre).
    ``serve_http(app) -> str``: the Flask ``app`` served over real HTTP on 127.0.0.1 (werkzeug,
        one thread per request); returns its base URL; stopped after the test.
    ``pat`` -> str: a new personal access token that ``ls_files`` exchanges; ``jwt_token(claims) -> str``.
    ``private_redis``, ``full_disk_at``: real faults (:mod:`tests.support.faults`).
"""
from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
import torch
from flask import Flask
from PIL import Image
from werkzeug.serving import make_server

import fcanet_core
from backend.bench.harness import (REDIS_OWNER_KEY, ManagedProcess, claim_redis_db, release_redis_db,
                                   worker_process)
from backend.config import Settings, get_settings
from backend.learning.intake import ReconcileThread
from tests.support.faults import full_disk_at, private_redis  # noqa: F401 (fixtures of the fault tests)

LEGACY_TOKEN = "0123456789abcdef0123456789abcdef01234567"
CAPTURE_SIZE = (320, 240)
#: Image files at the paths the captured requests reference, and the GrabCut image behind each.
CAPTURE_FILES = {"upload/1/a6b80a50-disc.png": "banana1.png", "local/ds1/disc2.png": "teddy.jpg"}


def make_jwt(claims: dict) -> str:
    """An (unsigned) JWT with ``claims``, shaped like Label Studio's tokens."""
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


@dataclass
class LabelStudioFiles:
    """State of the file server (see the module docstring); ``requests`` logs (method, path, auth)."""

    root: Path
    url: str = ""
    other_url: str = ""
    token: str = LEGACY_TOKEN
    pat: str = field(default_factory=lambda: make_jwt({"token_type": "refresh", "jti": uuid.uuid4().hex}))
    access_ttl: float = 300.0
    access_tokens: dict[str, float] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)

    def add(self, relative: str, data: bytes) -> str:
        """Write a file under the served root (``upload/…``, ``local/…``, ``storage/…``, ``public/…``)."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return relative

    def count(self, path_prefix: str) -> int:
        """How many GET requests went to paths starting with ``path_prefix``."""
        return sum(1 for method, path, _ in self.requests if method == "GET" and path.startswith(path_prefix))

    def authorized(self, header: str | None) -> bool:
        if header == f"Token {self.token}":
            return True
        if header and header.startswith("Bearer "):
            return self.access_tokens.get(header[7:], 0) > time.time()
        return False


def _handler(state: LabelStudioFiles) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
            pass

        def _send(self, code: int, body: bytes = b"", headers: dict | None = None) -> None:
            self.send_response(code)
            for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
                self.send_header(key, value)
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass                                  # the client went away (e.g. a killed worker)

        def _file(self, relative: str, needs_token: bool = True) -> None:
            if needs_token and not state.authorized(self.headers.get("Authorization")):
                return self._send(401, b'{"detail": "Authentication credentials were not provided."}')
            path = state.root / relative
            if not path.is_file():
                return self._send(404, b"not found")
            self._send(200, path.read_bytes(), {"Content-Type": "application/octet-stream"})

        def _drip(self, body: bytes, seconds_per_byte: float) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for i in range(len(body)):
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(seconds_per_byte)
            except (BrokenPipeError, ConnectionResetError):
                pass                                  # the client gave up, as it should

        def do_GET(self) -> None:  # noqa: N802 (stdlib name)
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            state.requests.append(("GET", self.path, self.headers.get("Authorization")))
            if parts.path.startswith("/data/upload/"):
                return self._file("upload/" + parts.path[len("/data/upload/"):])
            if parts.path.rstrip("/") == "/data/local-files":
                return self._file("local/" + query.get("d", [""])[-1].lstrip("/"))
            if parts.path.startswith("/drip/"):
                seconds, _, rest = parts.path[len("/drip/"):].partition("/")
                return self._drip((state.root / "upload" / rest).read_bytes(), float(seconds))
            if parts.path.startswith("/slow/"):
                seconds, _, rest = parts.path[len("/slow/"):].partition("/")
                time.sleep(float(seconds))
                return self._file("upload/" + rest)
            if parts.path.startswith("/tasks/") and parts.path.endswith("/presign/"):
                if not state.authorized(self.headers.get("Authorization")):
                    return self._send(401)
                uri = base64.urlsafe_b64decode(query["fileuri"][0]).decode()
                target = f"{state.other_url}/storage/{uri.split('://', 1)[1]}?X-Amz-Signature=secret"
                return self._send(303, headers={"Location": target})
            if parts.path.startswith("/storage/"):
                if self.headers.get("Authorization"):
                    return self._send(400, b"only one auth mechanism allowed")
                return self._file(parts.path.lstrip("/"), needs_token=False)
            if parts.path.startswith("/public/"):
                return self._file(parts.path.lstrip("/"), needs_token=False)
            if parts.path == "/redirect":
                return self._send(302, headers={"Location": query["to"][0]})
            self._send(404, b"no route")

        def do_POST(self) -> None:  # noqa: N802 (stdlib name)
            state.requests.append(("POST", self.path, self.headers.get("Authorization")))
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if self.path != "/api/token/refresh/":
                return self._send(404)
            if body.get("refresh") != state.pat:
                return self._send(401, b'{"detail": "Token is invalid or expired"}')
            expires = time.time() + state.access_ttl
            access = make_jwt({"token_type": "access", "exp": int(expires), "jti": uuid.uuid4().hex})
            state.access_tokens[access] = expires
            self._send(200, json.dumps({"access": access}).encode(), {"Content-Type": "application/json"})

    return Handler


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """Each test's code reads the environment it set up (:func:`get_settings` reads it once per process)."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def ls_files(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioFiles]:
    """The file server standing in for Label Studio's file routes (see the module docstring)."""
    state = LabelStudioFiles(tmp_path_factory.mktemp("ls-files"))
    for relative, name in CAPTURE_FILES.items():
        image = Image.open(shared_dir / "data" / "grabcut" / "images" / name).convert("RGB").resize(CAPTURE_SIZE)
        (state.root / relative).parent.mkdir(parents=True, exist_ok=True)
        image.save(state.root / relative, format="PNG")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    port = server.server_address[1]
    state.url, state.other_url = f"http://127.0.0.1:{port}", f"http://localhost:{port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def jwt_token() -> Callable[[dict], str]:
    """``jwt_token(claims)``: an unsigned JWT shaped like Label Studio's tokens."""
    return make_jwt


@pytest.fixture
def pat(ls_files: LabelStudioFiles) -> Iterator[str]:
    """A personal access token ``ls_files`` accepts, new per test (access tokens are cached per process)."""
    ls_files.pat = make_jwt({"token_type": "refresh", "jti": uuid.uuid4().hex})
    ls_files.access_ttl = 300.0
    yield ls_files.pat
    ls_files.access_ttl = 300.0


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weights lite0 checkpoint (seeded Kaiming init of every weight matrix)."""
    generator = torch.Generator().manual_seed(0)
    model = fcanet_core.build_model("lite0")
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                torch.nn.init.kaiming_normal_(param, generator=generator)
    return fcanet_core.save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-lite0.pt", model, "lite0",
                                       {"version": "tiny-lite0"})


@pytest.fixture(autouse=True)
def _stop_spool_replay() -> Iterator[None]:
    """Apps made by a test stop replaying their spool when it ends (their Redis db is emptied)."""
    yield
    ReconcileThread.stop_all()


@pytest.fixture(scope="session")
def redis_server_db() -> Iterator[str]:
    """A Redis db of this test session's own."""
    server = os.environ.get("FCANET_TEST_REDIS", "redis://127.0.0.1:6379")
    try:
        url = claim_redis_db(server)
    except ValueError as exc:
        pytest.fail(f"{exc}; start redis-server or set FCANET_TEST_REDIS")
    yield url
    release_redis_db(url)


def _empty(url: str) -> None:
    conn = redis.Redis.from_url(url)
    owner = conn.get(REDIS_OWNER_KEY)
    conn.flushdb()
    if owner is not None:
        conn.set(REDIS_OWNER_KEY, owner)


@pytest.fixture
def redis_url(redis_server_db: str) -> Iterator[str]:
    """The session's Redis db, emptied before and after the test."""
    _empty(redis_server_db)
    yield redis_server_db
    _empty(redis_server_db)


@pytest.fixture(scope="session")
def session_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MODEL_DIR shared by tests that do not change the registry (one loaded model for all)."""
    return tmp_path_factory.mktemp("model_data")


@pytest.fixture
def backend_env(ls_files: LabelStudioFiles, tiny_checkpoint: Path, session_model_dir: Path) -> dict[str, str]:
    """Backend environment: the tiny model, Label Studio = ``ls_files`` with its legacy token, no Redis."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        "FCANET_SHARED": os.environ.get("FCANET_SHARED", ""),
        "MODEL_DIR": str(session_model_dir),
        "FCANET_CHECKPOINT": str(tiny_checkpoint),
        "FCANET_SHORT_SIDE": "64",
        "DEVICE": "cpu",
        "LABEL_STUDIO_URL": ls_files.url,
        "LABEL_STUDIO_API_KEY": ls_files.token,
        "WORKER_HEARTBEAT_TTL": "3",
        "PREDICT_TIMEOUT": "60",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "text",
        "OMP_NUM_THREADS": "1",
    }


@pytest.fixture
def make_settings(backend_env: dict[str, str]) -> Callable[..., Settings]:
    """``make_settings(**env)``: settings from ``backend_env`` with env vars changed (None = unset)."""
    def make(**env: str | None) -> Settings:
        merged = {**backend_env, **env}
        return Settings.from_env({k: v for k, v in merged.items() if v is not None})
    return make


@pytest.fixture
def start_worker(backend_env: dict[str, str], redis_url: str,
                 tmp_path: Path) -> Iterator[Callable[..., ManagedProcess]]:
    """``start_worker(env=None, queues="inference")``: a registered ``python -m backend worker`` process."""
    started: list[ManagedProcess] = []

    def start(env: dict[str, str] | None = None, queues: str = "inference") -> ManagedProcess:
        full_env = {**backend_env, "REDIS_URL": redis_url, **(env or {})}
        log = tmp_path / f"worker-{len(started)}.log"
        worker = worker_process({k: v for k, v in full_env.items() if v}, queues, log).start()
        started.append(worker)
        worker.wait_rq_worker(redis_url, timeout=120)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def serve_http() -> Iterator[Callable[[Flask], str]]:
    """``serve_http(app) -> url``: the app behind a real threaded HTTP server on loopback."""
    servers = []

    def serve(app: Flask) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield serve
    for server in servers:
        server.shutdown()


@pytest.fixture
def capture(reference_dir: Path) -> Callable[[str], dict]:
    """``capture(name)``: the JSON body of ``shared/reference/labelstudio/<name>.json``."""
    def load(name: str) -> dict:
        return json.loads((reference_dir / "labelstudio" / f"{name}.json").read_text())
    return load


@pytest.fixture
def click_body(capture: Callable[[str], dict]) -> dict:
    """The captured interactive request (one positive smart keypoint at the image centre)."""
    return capture("predict_interactive_pos")
