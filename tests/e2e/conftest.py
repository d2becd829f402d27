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
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Sequence

import pytest
import requests

from backend.bench.annotator import LABEL_CONFIG
from backend.bench.harness import (REPO_ROOT, ManagedProcess, claim_redis_db, free_port, release_redis_db, web_process,
                                   worker_process)
from fcanet_core.data.datasets import Sample, load_samples

LS_USER = "admin@example.com"
LS_PASSWORD = "e2e-admin-pass-123"
#: Legacy DRF token of the admin user (at most 40 characters).
LS_TOKEN = "e2e0fcanet0token0000000000000000000000ab"


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


# --------------------------------------------------------------------------- Label Studio API

class LabelStudioAPI:
    """Minimal Label Studio REST client with legacy-token auth; failures raise with the reply body."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def request(self, method: str, path: str, timeout: float = 120, **kwargs: Any) -> Any:
        """Call ``path`` (starting with ``/``); returns the decoded JSON (``None`` for an empty body)."""
        resp = self.session.request(method, self.url + path, timeout=timeout, **kwargs)
        if not resp.ok:
            raise AssertionError(f"{method} {path} -> HTTP {resp.status_code}: {resp.text[:1000]}")
        return resp.json() if resp.content else None

    def create_project(self, title: str, label_config: str = LABEL_CONFIG) -> int:
        """Create a project; returns its id."""
        return self.request("POST", "/api/projects", json={"title": title, "label_config": label_config})["id"]

    def tasks(self, project_id: int) -> list[dict]:
        """All tasks of a project."""
        return self.request("GET", f"/api/tasks?project={project_id}&page_size=1000")["tasks"]

    def upload_images(self, project_id: int, paths: Sequence[Path]) -> dict[str, int]:
        """Import image files by upload; returns file stem → task id."""
        for path in paths:
            with open(path, "rb") as fh:
                self.request("POST", f"/api/projects/{project_id}/import", files={"file": (path.name, fh)})
        stems = {p.name: p.stem for p in paths}
        # uploaded files are stored as "<8 hex>-<original name>"
        return {stems[t["data"]["image"].rsplit("/", 1)[-1].split("-", 1)[1]]: t["id"]
                for t in self.tasks(project_id)}

    def add_local_files(self, project_id: int, folder: Path) -> dict[str, int]:
        """Import every image of ``folder`` (inside the document root) through a local-files storage."""
        storage = self.request("POST", "/api/storages/localfiles", json={
            "project": project_id, "title": folder.name, "path": str(folder),
            "use_blob_urls": True, "regex_filter": r".*\.(jpg|png)",
        })
        self.request("POST", f"/api/storages/localfiles/{storage['id']}/sync")
        return {Path(t["data"]["image"].split("?d=", 1)[1]).stem: t["id"] for t in self.tasks(project_id)}

    def connect_backend(self, project_id: int, url: str, is_interactive: bool = True) -> int:
        """Connect an ML backend to a project; returns the ML backend id."""
        return self.request("POST", "/api/ml", json={
            "url": url, "project": project_id, "is_interactive": is_interactive, "title": "fcanet",
        })["id"]

    def interactive_annotating(self, ml_id: int, task_id: int, regions: list[dict]) -> dict:
        """What the labeling UI sends on a smart-tool click; returns LS's reply (``data`` or ``errors``)."""
        return self.request("POST", f"/api/ml/{ml_id}/interactive-annotating",
                            json={"task": task_id, "context": {"result": regions}})

    def retrieve_predictions(self, project_id: int, task_ids: Sequence[int]) -> dict:
        """The Data Manager action "Retrieve predictions" on the given tasks."""
        return self.request(
            "POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project_id}",
            json={"selectedItems": {"all": False, "included": list(task_ids)}},
        )

    def predictions(self, task_id: int) -> list[dict]:
        """Predictions stored for a task."""
        return self.request("GET", f"/api/predictions?task={task_id}")

    def create_annotation(self, task_id: int, result: list[dict]) -> dict:
        """Submit an annotation (this makes Label Studio send ANNOTATION_CREATED to the backend)."""
        return self.request("POST", f"/api/tasks/{task_id}/annotations",
                            json={"result": result, "was_cancelled": False, "ground_truth": False})


@dataclass
class LabelStudio:
    """A running Label Studio server."""

    url: str
    token: str
    document_root: Path
    process: ManagedProcess
    api: LabelStudioAPI = field(init=False)

    def __post_init__(self) -> None:
        self.api = LabelStudioAPI(self.url, self.token)


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
    installed = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "install_label_studio.sh")],
        capture_output=True, text=True, check=False,
    )
    if installed.returncode != 0:
        pytest.fail(f"Label Studio could not be installed:\n{installed.stderr[-3000:]}")
    ls_bin = Path(installed.stdout.strip().splitlines()[-1]).parent / "label-studio"
    scratch = tmp_path_factory.mktemp("label-studio")
    document_root = scratch / "files"
    document_root.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        LABEL_STUDIO_USERNAME=LS_USER, LABEL_STUDIO_PASSWORD=LS_PASSWORD,
        LABEL_STUDIO_USER_TOKEN=LS_TOKEN, LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
        LABEL_STUDIO_ML_BLOCK_LOCAL_IP="false", LABEL_STUDIO_SSRF_PROTECTION_ENABLED="false",
        LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true", LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(document_root),
        LABEL_STUDIO_HOST=url, LABEL_STUDIO_COLLECT_ANALYTICS="false", LABEL_STUDIO_LATEST_VERSION_CHECK="false",
        SENTRY_DSN="", FRONTEND_SENTRY_DSN="", XDG_DATA_HOME=str(scratch / "xdg"),
    )
    process = _start(ManagedProcess("label-studio", [
        str(ls_bin), "start", "--no-browser", "--internal-host", "127.0.0.1", "-p", str(port),
        "--data-dir", str(scratch / "data"),
    ], env, scratch / "label-studio.log"))
    try:
        process.wait_http(f"{url}/health")
        server = LabelStudio(url, LS_TOKEN, document_root, process)
        process.wait_until(lambda: server.api.request("GET", "/api/current-user/whoami")["email"] == LS_USER,
                           "token login")
        yield server
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
        port = free_port()
        env = dict(os.environ, REDIS_URL=redis_url, LABEL_STUDIO_URL=label_studio.url,
                   LABEL_STUDIO_API_KEY=label_studio.token, MODEL_DIR=str(tmp_path / "model_data"),
                   HOST="127.0.0.1", PORT=str(port), PYTHONUNBUFFERED="1", **recipe)
        process = _start(ManagedProcess("serve.sh", ["bash", str(REPO_ROOT / "scripts" / "serve.sh")], env,
                                        tmp_path / "serve.log"))
        url = f"http://127.0.0.1:{port}"
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
