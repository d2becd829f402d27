"""A real Label Studio for the benchmarks and end-to-end tests: start one, and a small REST client.

:func:`start_label_studio` runs Label Studio 1.23.2 from its cached venv
(``scripts/install_label_studio.sh``, reused when present; ``$LABEL_STUDIO_VENV`` overrides the
folder) on a free loopback port, with an admin user whose legacy token is :data:`LS_TOKEN`.
:class:`LabelStudioAPI` is the REST client (legacy-token auth) the robot annotators use.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import requests

from fcanet_core.cli import free_port

from .annotator import LABEL_CONFIG
from .harness import REPO_ROOT, STARTUP_TIMEOUT_S, ManagedProcess

LS_USER = "admin@example.com"
LS_PASSWORD = "e2e-admin-pass-123"
#: Legacy DRF token of the admin user (at most 40 characters).
LS_TOKEN = "e2e0fcanet0token0000000000000000000000ab"


class LabelStudioError(AssertionError):
    """Label Studio answered a request with an error status (the reply body is in the message)."""


class LabelStudioAPI:
    """Minimal Label Studio REST client with legacy-token auth; failures raise :class:`LabelStudioError`."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def request(self, method: str, path: str, timeout: float = 120, **kwargs: Any) -> Any:
        """Call ``path`` (starting with ``/``); returns the decoded JSON (``None`` for an empty body)."""
        resp = self.session.request(method, self.url + path, timeout=timeout, **kwargs)
        if not resp.ok:
            raise LabelStudioError(f"{method} {path} -> HTTP {resp.status_code}: {resp.text[:1000]}")
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


def label_studio_process(scratch: Path) -> tuple[ManagedProcess, str, Path]:
    """An unstarted Label Studio process with its data under ``scratch``; also its URL and document root.

    Raises:
        RuntimeError: Label Studio could not be installed.
    """
    installed = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "install_label_studio.sh")],
                               capture_output=True, text=True, check=False)
    if installed.returncode != 0:
        raise RuntimeError(f"Label Studio could not be installed:\n{installed.stderr[-3000:]}")
    ls_bin = Path(installed.stdout.strip().splitlines()[-1]).parent / "label-studio"
    document_root = scratch / "files"
    document_root.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{(port := free_port())}"
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
    process = ManagedProcess("label-studio", [
        str(ls_bin), "start", "--no-browser", "--internal-host", "127.0.0.1", "-p", str(port),
        "--data-dir", str(scratch / "data"),
    ], env, scratch / "label-studio.log")
    return process, url, document_root


def wait_for_label_studio(process: ManagedProcess, url: str, document_root: Path,
                          timeout: float = STARTUP_TIMEOUT_S) -> LabelStudio:
    """Wait until the started ``process`` answers and the admin token logs in; the server."""
    process.wait_http(f"{url}/health", timeout)
    server = LabelStudio(url, LS_TOKEN, document_root, process)
    process.wait_until(lambda: server.api.request("GET", "/api/current-user/whoami")["email"] == LS_USER,
                       "token login")
    return server
