"""Downloads the images of clicks waiting in the inference queue while the worker is busy.

A worker runs one job at a time, so without this a click would wait for the downloads of every
click ahead of it, one after the other: eight clicks on an image host that never finishes would
hold a ninth annotator's click for eight ``IMAGE_DOWNLOAD_TIMEOUT`` periods. A watcher thread of
the worker looks at the head of the inference queue every ``POLL_S`` seconds and hands the images
of waiting clicks to a pool of download threads; the image fetcher shares a download between the
prefetch and the job that needs it, and answers a click on a source that just timed out at once.
The queued clicks therefore wait for about one download period and their own inference.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from rq import Queue
from rq.job import Job

from ..common.errors import BackendError
from ..config import Settings
from ..images.fetch import get_fetcher
from ..labelstudio.client import Credentials
from .jobs import SEGMENT_JOB, SegmentRequest, fetch_image

logger = logging.getLogger(__name__)

#: Queued clicks looked at, and downloads run at once.
PREFETCH_JOBS = 16
#: Seconds between two looks at the queue.
POLL_S = 0.25
#: Prefetch failures of one kind are logged at WARNING at most once per this many seconds.
WARN_EVERY_S = 60.0


class RateLimitedWarning:
    """Logs a warning per kind at most once every ``every_s`` seconds, counting the ones left out."""

    def __init__(self, every_s: float = WARN_EVERY_S) -> None:
        self.every_s = every_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def warn(self, kind: str, message: str, **extra: object) -> None:
        """Log ``message`` at WARNING unless ``kind`` was logged less than ``every_s`` ago."""
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(kind, -self.every_s) < self.every_s:
                self._skipped[kind] = self._skipped.get(kind, 0) + 1
                return
            self._last[kind] = now
            skipped = self._skipped.pop(kind, 0)
        logger.warning(message, extra={**extra, "similar_not_logged": skipped})


class Prefetcher:
    """Fetches the images of queued click jobs into the process's image cache."""

    def __init__(self, settings: Settings, parallel: int = PREFETCH_JOBS) -> None:
        self.settings = settings
        self._pool = ThreadPoolExecutor(parallel, thread_name_prefix="prefetch")
        self._lock = threading.Lock()
        self._pending: set[tuple[str, int | None]] = set()
        self._stop = threading.Event()
        self._warnings = RateLimitedWarning()

    def watch(self, queue: Queue) -> None:
        """Look at ``queue`` every ``POLL_S`` seconds in a daemon thread until :meth:`shutdown`."""
        threading.Thread(target=self._watch, args=(queue,), name="prefetch-watch", daemon=True).start()

    def _watch(self, queue: Queue) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self.queued(queue)
            except Exception as exc:  # noqa: BLE001 - Redis hiccups: the next look retries
                self._warnings.warn("queue", "prefetch cannot look at the inference queue", error=str(exc))

    def queued(self, queue: Queue, limit: int = PREFETCH_JOBS) -> None:
        """Start fetching the images of the first ``limit`` jobs waiting in ``queue``."""
        for job in Job.fetch_many(queue.get_job_ids(0, limit - 1), connection=queue.connection):
            if job is None or job.func_name != SEGMENT_JOB:
                continue
            try:
                request = SegmentRequest.from_payload(job.args[0])
            except (BackendError, IndexError):
                continue
            key = (request.image, request.task_id)
            with self._lock:
                if key in self._pending:
                    continue
                self._pending.add(key)
            self._pool.submit(self._fetch, request, key)

    def _fetch(self, request: SegmentRequest, key: tuple[str, int | None]) -> None:
        try:
            self._fetch_quietly(request)
        finally:
            with self._lock:
                self._pending.discard(key)

    def _fetch_quietly(self, request: SegmentRequest) -> None:
        """Fetch the request's image into the cache; a failure is logged (rate-limited), not raised."""
        try:
            fetch_image(request, self.settings)
        except BackendError as exc:
            self._warnings.warn("fetch", "prefetch failed", image=request.image, detail=exc.detail)
        except Exception as exc:  # noqa: BLE001 - the job itself reports what went wrong
            self._warnings.warn("fetch", "prefetch failed", image=request.image, error=repr(exc))

    def answers_at_once(self, request: SegmentRequest) -> bool:
        """Whether the request's image can be had without waiting for its source
        (:meth:`backend.images.fetch.ImageFetcher.answers_at_once`)."""
        credentials = Credentials.resolve(self.settings, request.credentials)
        return get_fetcher(self.settings).answers_at_once(request.image, request.task_id, credentials)

    def fetch_then(self, request: SegmentRequest, then: Callable[[], None]) -> None:
        """Fetch the request's image in a download thread (joining a download of it already
        running), then call ``then()`` whatever the outcome."""
        def run() -> None:
            try:
                self._fetch_quietly(request)
            finally:
                then()

        self._pool.submit(run)

    def shutdown(self) -> None:
        """Stop watching and taking work (running downloads end at their deadline)."""
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
