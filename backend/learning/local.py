"""Learning jobs without Redis: one background thread of the web process runs them in order;
fine-tuning runs in a child process of it (``fcanet_core.train`` installs signal handlers, which
needs a main thread)."""
from __future__ import annotations

import logging
import multiprocessing
import threading
import uuid
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Callable

from ..config import Settings
from .finetune import fine_tune
from .status import Reason, RequestStatus

logger = logging.getLogger(__name__)


class _LocalJobs:
    """The learning thread and the fine-tunings waiting in it (project → job id)."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="learning")
        self.pending: dict[str, str] = {}
        self.lock = threading.Lock()

    def submit(self, job_id: str, func: Callable[..., Any], *args: Any) -> str:
        future = self.executor.submit(func, *args)
        future.add_done_callback(lambda f: _log_outcome(job_id, f))
        return job_id


def _log_outcome(job_id: str, future: Future) -> None:
    exc = future.exception()
    if exc is not None:
        logger.error("learning job failed", exc_info=exc, extra={"job_id": job_id})
    else:
        logger.info("learning job done", extra={"job_id": job_id, "result": future.result()})


_LOCAL: _LocalJobs | None = None
_LOCAL_GUARD = threading.Lock()


def _local() -> _LocalJobs:
    global _LOCAL
    with _LOCAL_GUARD:
        if _LOCAL is None:
            _LOCAL = _LocalJobs()
        return _LOCAL


def submit_local(func: Callable[..., Any], *args: Any) -> str:
    """Run ``func(*args)`` in the learning thread; returns a job id for the logs."""
    return _local().submit(f"local-{uuid.uuid4().hex[:12]}", func, *args)


def wait_local_jobs() -> None:
    """Block until the learning jobs submitted so far in this process (no Redis) are done."""
    _local().executor.submit(lambda: None).result()


def request_local(project: str, settings: Settings, reason: Reason) -> dict:
    """Queue a fine-tuning in the learning thread unless one of the project waits there already."""
    jobs = _local()
    with jobs.lock:
        if project in jobs.pending:
            return {"status": RequestStatus.COALESCED, "project": project, "job_id": jobs.pending[project],
                    "reason": reason}
        job_id = jobs.pending[project] = f"local-fine-tune-{project}-{uuid.uuid4().hex[:8]}"
    jobs.submit(job_id, _run_fine_tune, project, reason, settings, job_id)
    return {"status": RequestStatus.QUEUED, "project": project, "job_id": job_id, "reason": reason}


def _run_fine_tune(project: str, reason: Reason, settings: Settings, job_id: str) -> dict:
    jobs = _local()
    with jobs.lock:
        jobs.pending.pop(project, None)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return {"job_id": job_id, **pool.submit(fine_tune, project, reason, settings).result()}
