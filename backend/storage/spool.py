"""Webhook events kept on disk while the queue is down, and handed to it once it is back.

Label Studio sends a webhook once and does not retry, so an event that cannot be queued is written
to ``MODEL_DIR/spool/`` (one JSON file per event, fsync'ed, renamed into place, folder fsync'ed)
before the webhook is answered. :class:`SpoolDrainer` (a daemon thread of the web process) offers
the files to the queue again, oldest first, every few seconds; a file is deleted only after its
event was handled. Several web processes may share the folder: a drain holds an exclusive lock.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from fcanet_core.atomic import atomic_write

from ..common.errors import BackendError
from ..common.locks import FileLock

logger = logging.getLogger(__name__)

#: Seconds between two attempts to hand spooled events to the queue.
DRAIN_EVERY_S = 2.0


class WebhookSpool:
    """Spooled webhook events under ``root`` (normally ``MODEL_DIR/spool``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def put(self, event: str, payload: dict) -> str:
        """Store one event durably; returns its file name once it is on disk."""
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
        text = json.dumps({"action": event, "payload": payload})
        atomic_write(self.root / name, lambda f: f.write(text.encode("utf-8")), mode=0o600)
        logger.warning("webhook spooled: the queue is unavailable", extra={"event": event, "spool_file": name})
        return name

    def pending(self) -> list[Path]:
        """Spooled events, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.suffix == ".json" and not p.name.startswith("."))

    def drain(self, handle: Callable[[str, dict], Any]) -> int:
        """Hand every spooled event to ``handle(event, payload)``, oldest first; returns how many.

        Stops at the first :class:`BackendError` with status 503 (the queue is still down) and
        leaves that event and the later ones for the next drain. An event ``handle`` rejects
        otherwise (a 4xx) is logged and dropped.
        """
        if not self.pending():
            return 0
        handled = 0
        lock = FileLock(self.root / ".lock")
        if not lock.acquire(wait_s=0):
            return 0                                  # another process is draining
        try:
            for path in self.pending():
                try:
                    record = json.loads(path.read_text(encoding="utf-8"))
                except FileNotFoundError:
                    continue
                try:
                    handle(record["action"], record["payload"])
                except BackendError as exc:
                    if exc.status == 503:
                        return handled
                    logger.error("spooled webhook rejected: dropped", extra={"spool_file": path.name,
                                                                           "detail": exc.detail})
                path.unlink(missing_ok=True)
                handled += 1
        finally:
            lock.release()
        if handled:
            logger.info("spooled webhooks handed to the queue", extra={"events": handled})
        return handled


class SpoolDrainer:
    """A daemon thread that drains ``spool`` into ``handle`` every ``every_s`` seconds."""

    def __init__(self, spool: WebhookSpool, handle: Callable[[str, dict], Any], every_s: float = DRAIN_EVERY_S) -> None:
        self.spool, self.handle, self.every_s = spool, handle, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-spool", daemon=True)

    def start(self) -> "SpoolDrainer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.spool.drain(self.handle)
            except Exception:  # noqa: BLE001 - keep trying; the files stay on disk
                logger.exception("draining the webhook spool failed")
