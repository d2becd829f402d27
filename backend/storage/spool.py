"""Webhook events kept on disk until the work they ask for is done: the source of truth for them.

Label Studio sends a webhook once and does not retry, and Redis may restart without its data (no
persistence), so every webhook that asks for work is written to ``MODEL_DIR/spool/`` (one JSON file
per event, fsync'ed, renamed into place, folder fsync'ed) *before* it is answered 2xx. The file
stays until the event's jobs are confirmed done (:mod:`backend.learning.reconcile` replays and
checks them); an event whose jobs fail for good (a 4xx: the image is gone, the masks are
malformed) is moved to ``spool/rejected/`` and logged. A file that cannot be written (disk full,
read-only file system) refuses the webhook with 507, so nothing is acknowledged and then lost.
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path

from fcanet_core.atomic import atomic_write

from ..common.errors import BackendError

logger = logging.getLogger(__name__)

REJECTED_DIR = "rejected"


class StorageFull(BackendError):
    """The spool could not be written (disk full, quota, read-only): the event was not accepted."""

    status = 507


class WebhookSpool:
    """Spooled webhook events under ``root`` (normally ``MODEL_DIR/spool``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def put(self, event: str, payload: dict) -> str:
        """Store one event durably; returns its name (the file stem) once it is on disk.

        Raises:
            StorageFull: the file could not be written; nothing is left behind.
        """
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        text = json.dumps({"action": event, "payload": payload})
        try:
            atomic_write(self.root / f"{name}.json", lambda f: f.write(text.encode("utf-8")), mode=0o600)
        except OSError as exc:
            raise StorageFull(f"the webhook {event} was not accepted: it cannot be written to {self.root} "
                              f"({os.strerror(exc.errno) if exc.errno else exc}); free space under MODEL_DIR "
                              "and send it again") from None
        return name

    def pending(self) -> list[str]:
        """Names of the spooled events, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p.stem for p in self.root.iterdir()
                      if p.suffix == ".json" and not p.name.startswith(".") and p.is_file())

    def read(self, name: str) -> tuple[str, dict] | None:
        """``(event, payload)`` of a spooled event, or ``None`` when it is gone."""
        try:
            record = json.loads((self.root / f"{name}.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return record["action"], record["payload"]

    @staticmethod
    def age_s(name: str) -> float:
        """Seconds since the event was spooled (its name starts with the time in nanoseconds)."""
        return time.time() - int(name.split("-", 1)[0]) / 1e9

    def remove(self, name: str) -> None:
        """Forget an event whose work is done."""
        (self.root / f"{name}.json").unlink(missing_ok=True)

    def reject(self, name: str, detail: str) -> None:
        """Move an event that can never be done to ``rejected/`` (kept for inspection) and log why."""
        target = self.root / REJECTED_DIR
        target.mkdir(parents=True, exist_ok=True)
        os.replace(self.root / f"{name}.json", target / f"{name}.json")
        logger.error("webhook event rejected", extra={"spool_file": name, "detail": detail})
