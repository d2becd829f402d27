"""A project's training lock: one fine-tuning per project at a time, across workers and machines.

With Redis an :class:`~backend.common.locks.OwnerLock` that a heartbeat thread extends, so a killed worker
frees it within ``TRAIN_LOCK_TTL``; the heartbeat also keeps the running RQ job alive for that long
only. Without Redis a :class:`~backend.common.locks.FileLock` in the project's training folder.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Iterator

from rq.job import Job

from ..common.errors import BackendError
from ..common.locks import FileLock, OwnerLock
from ..config import Settings
from ..inference.queueing import redis_connection
from .state import lock_key, training_dir

logger = logging.getLogger(__name__)


class TrainingBusy(BackendError):
    """Another fine-tuning of the project holds the lock for longer than we may wait."""

    status = 409


class _Heartbeat:
    """Extends an owner lock (and the RQ job's execution) every ``ttl / 3`` seconds; sets ``lost``
    when the lock is no longer ours."""

    def __init__(self, lock: OwnerLock, job: Job | None) -> None:
        self.lock, self.job = lock, job
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="training-lock", daemon=True)

    def start(self) -> None:
        self._beat_job()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat_job(self) -> None:
        """Keep the RQ job's execution alive for ``ttl`` only: when the worker is killed, RQ's
        registry maintenance (run by the next worker that starts) marks the job failed soon after."""
        if self.job is None:
            return
        with self.lock.connection.pipeline() as pipe:
            for execution in self.job.get_executions():
                execution.heartbeat(self.job.started_job_registry, self.lock.ttl, pipeline=pipe)
            pipe.execute()

    def _run(self) -> None:
        while not self._stop.wait(self.lock.ttl / 3):
            try:
                if not self.lock.extend():
                    self.lost.set()
                    logger.error("training lock lost", extra={"lock": self.lock.key})
                    return
                self._beat_job()
            except Exception:  # noqa: BLE001 - a Redis hiccup; the next beat retries
                logger.warning("training lock heartbeat failed", exc_info=True, extra={"lock": self.lock.key})


@contextmanager
def training_lock(settings: Settings, project: str, job: Job | None = None) -> Iterator[threading.Event]:
    """Hold the project's training lock (waiting up to ``TRAIN_JOB_TIMEOUT``); yields a *lost* flag.

    Raises:
        TrainingBusy: the lock stayed taken for ``TRAIN_JOB_TIMEOUT``.
    """
    cfg = settings.learning
    if settings.queued:
        lock: OwnerLock | FileLock = OwnerLock(redis_connection(settings), lock_key(project), cfg.lock_ttl)
    else:
        lock = FileLock(training_dir(settings, project) / "lock")
    if not lock.acquire(cfg.job_timeout):
        raise TrainingBusy(f"project {project}: another fine-tuning held the lock for {cfg.job_timeout}s")
    heartbeat = _Heartbeat(lock, job) if isinstance(lock, OwnerLock) else None
    lost = heartbeat.lost if heartbeat else threading.Event()
    try:
        if heartbeat:
            heartbeat.start()
        yield lost
    finally:
        if heartbeat:
            heartbeat.stop()
        lock.release()
