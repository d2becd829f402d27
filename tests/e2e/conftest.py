"""End-to-end fixtures: a real Label Studio, real Redis, the backend's gunicorn web process and workers.

Everything runs as real processes on loopback, started once per pytest session on first use and
stopped at the end; each process logs to a file whose tail is attached to every failing test report.

Session fixtures
    ``label_studio`` -> :class:`LabelStudio`
        Label Studio 1.23.2 from its cached venv (``scripts/install_label_studio.sh``, reused when
        present; ``$LABEL_STUDIO_VENV`` overrides the folder) on a free loopback port, with an admin
        user whose legacy token is ``.token``; ``.url``, ``.api`` (:class:`LabelStudioAPI`),
        ``.document_root`` (local-files serving root, a temp folder).
    ``ls_api`` -> :class:`LabelStudioAPI`
        REST client authenticated with the token: ``create_project``, ``upload_images``,
        ``add_local_files``, ``connect_backend``, ``interactive_annotating``,
        ``retrieve_predictions``, ``predictions``, ``create_annotation``, and plain ``request``.
    ``e2e_redis_url`` -> str
        ``redis://…/<db>``: a Redis db claimed for this session with ``backend.bench.harness.claim_redis_db``
        (emptied before and after; dbs of other live sessions or holding other data are skipped).
        ``$FCANET_TEST_REDIS`` sets the server (default ``redis://127.0.0.1:6379``).
    ``backend`` -> :class:`Backend`
        The backend stack against that Label Studio: gunicorn ``backend._wsgi:app`` (``.url``) and
        one worker process on ``inference,batch``; ``.env`` is the environment both run with
        (REDIS_URL, LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY, MODEL_DIR = ``.model_dir``).
    ``start_worker`` -> ``start_worker(queues: str) -> ManagedProcess``
        Starts a further worker process (e.g. ``"training"``) with the backend's environment; it is
        stopped at the end of the session.
    ``grabcut`` -> ``dict[str, fcanet_core.data.datasets.Sample]``
        The shared GrabCut pairs by name (``"teddy"``, ``"banana1"``, …).

    ``serve`` -> ``serve(recipe: dict[str, str]) -> ContextManager[Served]``
        ``bash scripts/serve.sh`` as users run it (web process, click worker, low-priority training
        worker) on a free port and a Redis db of its own, against the session's Label Studio, with
        ``recipe`` added to its environment; :class:`Served` has ``url``, ``redis_url``,
        ``model_dir``, ``process``.

    ``make_project`` -> ``make_project(names, label_config=LABEL_CONFIG, connect=True,
    local_files=False, title=None) -> Project``
        A new project with the named GrabCut images as tasks (uploaded through the API, or from a
        local-files storage under ``document_root``), connected to ``backend`` with
        ``is_interactive=true`` unless ``connect=False`` (the backend is started on first need).
        :class:`Project` has ``id``, ``tasks`` (name → task id), ``ml_id``.

The robot-annotator helpers live in :mod:`backend.bench.annotator` (shared with the load test):
``LABEL_CONFIG``, ``keypoint_region`` (a smart keypoint as the labeling UI sends it),
``robot_click`` (the robot user's next click, at a pixel centre), ``brush_mask`` /
``result_mask`` (decode ``brushlabels`` results to 0/1 masks).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Iterator, Sequence

import pytest
import requests

from backend.bench.annotator import LABEL_CONFIG
from backend.bench.harness import (ManagedProcess, claim_redis_db, free_port, release_redis_db, web_process,
                                   worker_process)
from backend.bench.labelstudio_server import LabelStudio, LabelStudioAPI, label_studio_process, wait_for_label_studio
from backend.bench.roundtrip import serve_process
from fcanet_core.data.datasets import Sample, load_samples


# --------------------------------------------------------------------------- processes

#: Every process started in this session; their log tails go into failing test reports.
_PROCESSES: list[ManagedProcess] = []


def _start(process: ManagedProcess) -> ManagedProcess:
    _PROCESSES.append(process.start())
    return process


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Attach the tail of every process log to failing e2e test reports."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for process in _PROCESSES:
            report.sections.append((f"{process.name} log ({process.log_path})", process.tail()))


# --------------------------------------------------------------------------- Label Studio

@dataclass
class Project:
    """A Label Studio project made by ``make_project``."""

    id: int
    tasks: dict[str, int]
    ml_id: int | None


@dataclass
class Served:
    """A running ``bash scripts/serve.sh``."""

    url: str
    redis_url: str
    model_dir: Path
    process: ManagedProcess


@dataclass
class Backend:
    """The backend's web process and inference worker, and the environment they run with."""

    url: str
    env: dict[str, str]
    redis_url: str
    model_dir: Path
    web: ManagedProcess
    worker: ManagedProcess


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    """A Label Studio server for the whole session (see the module docstring)."""
    try:
        process, url, document_root = label_studio_process(tmp_path_factory.mktemp("label-studio"))
    except RuntimeError as exc:
        pytest.fail(str(exc))
    _start(process)
    try:
        yield wait_for_label_studio(process, url, document_root)
    finally:
        process.stop()


@pytest.fixture(scope="session")
def ls_api(label_studio: LabelStudio) -> LabelStudioAPI:
    """The session Label Studio's API client."""
    return label_studio.api


@pytest.fixture(scope="session")
def e2e_redis_url() -> Iterator[str]:
    """A Redis db of this session's own (see the module docstring)."""
    server = os.environ.get("FCANET_TEST_REDIS", "redis://127.0.0.1:6379")
    try:
        url = claim_redis_db(server)
    except ValueError as exc:
        pytest.fail(f"{exc}; start redis-server (scripts/test.sh does) or set FCANET_TEST_REDIS")
    try:
        yield url
    finally:
        release_redis_db(url)


def _start_worker(env: dict[str, str], queues: str, log_dir: Path) -> ManagedProcess:
    """Start ``python -m backend worker --queues QUEUES`` and wait until it is registered in Redis."""
    worker = _start(worker_process(env, queues, log_dir / f"worker-{queues.replace(',', '-')}-{len(_PROCESSES)}.log"))
    worker.wait_rq_worker(env["REDIS_URL"])
    return worker


@pytest.fixture(scope="session")
def backend(label_studio: LabelStudio, e2e_redis_url: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """gunicorn web process + inference worker (see the module docstring)."""
    scratch = tmp_path_factory.mktemp("backend")
    model_dir = scratch / "model_data"
    env = dict(
        os.environ, REDIS_URL=e2e_redis_url, LABEL_STUDIO_URL=label_studio.url,
        LABEL_STUDIO_API_KEY=label_studio.token, MODEL_DIR=str(model_dir), PYTHONUNBUFFERED="1",
    )
    port = free_port()
    web = _start(web_process(env, port, scratch / "web.log"))
    try:
        url = f"http://127.0.0.1:{port}"
        web.wait_http(f"{url}/health")
        worker = _start_worker(env, "inference,batch", scratch)
        try:
            yield Backend(url, env, e2e_redis_url, model_dir, web, worker)
        finally:
            worker.stop()
    finally:
        web.stop()


@pytest.fixture(scope="session")
def start_worker(backend: Backend,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], ManagedProcess]]:
    """Factory for further worker processes, stopped at the end of the session."""
    started: list[ManagedProcess] = []
    log_dir = tmp_path_factory.mktemp("workers")

    def start(queues: str) -> ManagedProcess:
        service = _start_worker(backend.env, queues, log_dir)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def serve(label_studio: LabelStudio, tmp_path: Path) -> Callable[[dict[str, str]], ContextManager[Served]]:
    """Factory of ``bash scripts/serve.sh`` runs (see the module docstring)."""

    @contextlib.contextmanager
    def start(recipe: dict[str, str]) -> Iterator[Served]:
        redis_url = claim_redis_db(os.environ.get("FCANET_TEST_REDIS", "redis://127.0.0.1:6379"))
        process, url = serve_process(label_studio.url, label_studio.token, redis_url, tmp_path, **recipe)
        _start(process)
        try:
            process.wait_until(lambda: not requests.get(f"{url}/health", timeout=2).json()["warnings"],
                               "workers on every queue")
            yield Served(url, redis_url, tmp_path / "model_data", process)
        finally:
            process.stop()
            release_redis_db(redis_url)

    return start


@pytest.fixture(scope="session")
def grabcut(shared_dir: Path) -> dict[str, Sample]:
    """The shared GrabCut samples by name."""
    return {s.name: s for s in load_samples(shared_dir / "data" / "grabcut")}


@pytest.fixture(scope="session")
def make_project(request: pytest.FixtureRequest, label_studio: LabelStudio,
                 grabcut: dict[str, Sample]) -> Callable[..., Project]:
    """Factory for projects with GrabCut tasks (see the module docstring)."""

    def make(names: Sequence[str], label_config: str = LABEL_CONFIG, connect: bool = True,
             local_files: bool = False, title: str | None = None) -> Project:
        api = label_studio.api
        project_id = api.create_project(title or f"e2e-{uuid.uuid4().hex[:8]}", label_config)
        paths = [grabcut[n].image_path for n in names]
        if local_files:
            folder = label_studio.document_root / f"project-{project_id}"
            folder.mkdir()
            for path in paths:
                shutil.copy(path, folder / path.name)
            tasks = api.add_local_files(project_id, folder)
        else:
            tasks = api.upload_images(project_id, paths)
        ml_id = None
        if connect:
            ml_id = api.connect_backend(project_id, request.getfixturevalue("backend").url)
        return Project(project_id, tasks, ml_id)

    return make
