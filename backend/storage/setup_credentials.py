"""The Label Studio hostname and token each project sent to ``/setup``, shared by every web process.

With ``WORKERS`` > 1 a click may land on another process than the ``/setup`` that brought the
credentials, so they are kept in ``MODEL_DIR/setup-credentials.json`` (mode 0600, written
atomically under a file lock) and read again by a process when the file changed. A process that
cannot write the file (disk full) still keeps what it got in memory and logs a warning.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from fcanet_core.atomic import atomic_write

from ..common.locks import FileLock
from ..labelstudio.client import Credentials

logger = logging.getLogger(__name__)

FILE_NAME = "setup-credentials.json"


class SetupCredentials:
    """Credentials per project, in ``folder`` (normally ``MODEL_DIR``)."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / FILE_NAME
        self._lock = threading.Lock()
        self._by_project: dict[str, dict] = {}
        self._seen: int | None = None                 # mtime_ns of the file last read

    def remember(self, project: str | None, hostname: str | None, token: str | None) -> None:
        """Keep what ``/setup`` sent for ``project`` (nothing without a project or credentials)."""
        if not project or not (hostname or token):
            return
        entry = {"url": hostname.rstrip("/") if hostname else None, "api_key": token}
        with self._lock:
            self._by_project[project] = entry
            try:
                with FileLock(self.path.with_name(f".{FILE_NAME}.lock")):
                    shared = {**self._read(), project: entry}
                    text = json.dumps(shared)
                    atomic_write(self.path, lambda f: f.write(text.encode("utf-8")), mode=0o600)
                self._by_project, self._seen = shared, self._mtime()
            except OSError as exc:
                logger.warning("the /setup credentials are kept in this process only", extra={"error": str(exc)})

    def get(self, project: str | None) -> Credentials | None:
        """What ``/setup`` last sent for ``project`` in any web process, or ``None``."""
        if not project:
            return None
        with self._lock:
            mtime = self._mtime()
            if mtime is not None and mtime != self._seen:
                self._by_project, self._seen = {**self._by_project, **self._read()}, mtime
            entry = self._by_project.get(project)
        return Credentials(entry.get("url"), entry.get("api_key")) if entry else None

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _mtime(self) -> int | None:
        try:
            return os.stat(self.path).st_mtime_ns
        except OSError:
            return None
