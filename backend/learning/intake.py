"""Webhooks in, until their work is done: spool first, answer, then replay until confirmed.

:meth:`WebhookIntake.receive` answers ``POST /webhook``: the event is checked (400), written to
the spool (:mod:`backend.spool`, 507 when it cannot be), then its jobs are enqueued under ids
derived from the spool name (201), or, with Redis down, left to the spool (202). Start Training
is answered at once (it only asks for a fine-tuning, which coalesces) and spooled only while
Redis is down.

:meth:`WebhookIntake.reconcile`, run every few seconds by a daemon thread of each web process
(one at a time across processes: a file lock), brings every spooled event to an end:

* with Redis: each job of the event is looked up by its id. A job Redis does not know (it
  restarted without its data, or was down when the webhook came) is enqueued again; a failed
  one is enqueued again ``RETRY_AFTER_S`` after it failed (disk full, Label Studio unreachable),
  unless it failed with a 4xx (the image is gone, malformed masks): then the event is rejected.
  When every job finished the file is removed. Storing an annotation replaces its entry, so a job
  that runs twice still stores it once.
* without Redis: events not running in the learning thread are submitted to it again (all of
  them after a restart; a failed one ``RETRY_AFTER_S`` after it failed).
"""
from __future__ import annotations

import logging
import threading
import time
import weakref

from redis import Redis
from redis.exceptions import RedisError
from rq.job import Job, JobStatus

from ..config import Settings
from ..common.errors import BackendError
from ..common.locks import FileLock
from ..inference.queueing import QueueUnavailable, redis_connection
from ..storage.spool import WebhookSpool
from .events import EventPlan, handle_event, job_id, plan_event, submit_planned
from .local import submit_local
from .status import RequestStatus

logger = logging.getLogger(__name__)

#: Seconds between two reconciliation rounds.
RECONCILE_EVERY_S = 2.0
#: A spooled event this young is left alone (the web request that wrote it is enqueueing it).
GRACE_S = 10.0
#: Seconds after a failure before a job is tried again.
RETRY_AFTER_S = 30.0
#: Job states that need nothing from the reconciler yet.
_UNDER_WAY = (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED)


def _permanent(error: BaseException | dict | None) -> str | None:
    """The detail of a failure that no retry can mend (a 4xx), else ``None``."""
    if isinstance(error, BackendError) and 400 <= error.status < 500:
        return error.detail
    if isinstance(error, dict) and 400 <= int(error.get("status", 500)) < 500:
        return str(error.get("detail"))
    return None


class WebhookIntake:
    """The spool of one ``MODEL_DIR`` and the replay of its events (module docstring)."""

    def __init__(self, spool: WebhookSpool, settings: Settings) -> None:
        self.spool, self.settings = spool, settings
        self._lock = threading.Lock()
        self._running: set[str] = set()               # without Redis: events in the learning thread
        self._failed_at: dict[str, float] = {}        # without Redis: when an event last failed
        self._redis: Redis | None = None

    # ------------------------------------------------------------------ the webhook
    def receive(self, event: str, payload: dict) -> tuple[dict, int]:
        """``(answer body, HTTP status)`` for one webhook (module docstring).

        Raises:
            BadRequest: a payload that lacks what the event needs (nothing is spooled).
            StorageFull: the spool cannot be written (nothing is acknowledged).
        """
        plan = plan_event(event, payload)
        if not plan.has_work:
            return {"status": "ok", "result": {"event": event, "status": RequestStatus.IGNORED, "jobs": [],
                                               "ignored": plan.ignored}}, 201
        if plan.direct:
            try:
                return {"status": "ok", "result": handle_event(event, payload, self.settings)}, 201
            except QueueUnavailable:
                self.spool.put(event, payload)
                return self._spooled(event), 202
        name = self.spool.put(event, payload)
        if not self.settings.queued:
            return {"status": "ok", "result": self._submit_local(name, event, plan)}, 201
        try:
            return {"status": "ok", "result": handle_event(event, payload, self.settings, receipt=name)}, 201
        except QueueUnavailable:
            logger.warning("webhook spooled: the queue is unavailable", extra={"event": event, "spool_file": name})
            return self._spooled(event), 202

    @staticmethod
    def _spooled(event: str) -> dict:
        return {"status": "spooled", "result": {"event": event, "status": "spooled"}}

    # ------------------------------------------------------------------ replay
    def reconcile(self) -> None:
        """One round over the spooled events (module docstring); Redis errors end the round."""
        names = [n for n in self.spool.pending() if self.spool.age_s(n) >= GRACE_S]
        if not names:
            return
        lock = FileLock(self.spool.root / ".lock")
        if not lock.acquire(wait_s=0):
            return                                    # another web process reconciles
        try:
            for name in names:
                record = self.spool.read(name)
                if record is None:
                    continue
                try:
                    plan = plan_event(*record)
                except BackendError as exc:
                    self.spool.reject(name, exc.detail)
                    continue
                if plan.direct:
                    result = handle_event(*record, self.settings)
                    self.spool.remove(name)
                    logger.info("spooled webhook handled", extra={"spool_file": name, "result": result})
                elif self.settings.queued:
                    self._reconcile_queued(name, plan)
                else:
                    self._reconcile_local(name, record[0], plan)
        except (RedisError, QueueUnavailable) as exc:
            logger.warning("spooled webhooks wait for the queue", extra={"error": str(exc)})
        finally:
            lock.release()

    def _reconcile_queued(self, name: str, plan: EventPlan) -> None:
        ids = [job_id(name, i) for i in range(len(plan.jobs))]
        done = 0
        for planned, index, known in zip(plan.jobs, ids, Job.fetch_many(ids, connection=self._connection())):
            status = known.get_status(refresh=False) if known is not None else None
            if status == JobStatus.FINISHED:
                done += 1
            elif status in _UNDER_WAY:
                continue
            elif status == JobStatus.FAILED and (detail := _permanent(known.meta.get("error"))):
                self.spool.reject(name, detail)
                return
            elif status is None or known.ended_at is None or time.time() - known.ended_at.timestamp() >= RETRY_AFTER_S:
                submit_planned(self.settings, planned, index)
                logger.warning("webhook job enqueued again", extra={"spool_file": name, "job_id": index,
                                                                   "was": str(status) if status else "unknown to Redis"})
        if done == len(plan.jobs):
            self.spool.remove(name)

    # ------------------------------------------------------------------ without Redis
    def _submit_local(self, name: str, event: str, plan: EventPlan) -> dict:
        with self._lock:
            self._running.add(name)
        job = submit_local(self._run_local, name, plan)
        return {"event": event, "status": RequestStatus.QUEUED, "jobs": [job], "ignored": plan.ignored}

    def _connection(self) -> Redis:
        if self._redis is None:
            self._redis = redis_connection(self.settings)
        return self._redis

    def _reconcile_local(self, name: str, event: str, plan: EventPlan) -> None:
        with self._lock:
            if name in self._running or time.time() - self._failed_at.get(name, 0.0) < RETRY_AFTER_S:
                return
        self._submit_local(name, event, plan)

    def _run_local(self, name: str, plan: EventPlan) -> dict:
        """The learning thread's unit of work: every job of one spooled event, then the file goes."""
        try:
            results = [planned.func(*planned.args, self.settings) for planned in plan.jobs]
        except Exception as exc:
            if detail := _permanent(exc):
                self.spool.reject(name, detail)
                raise
            with self._lock:
                self._failed_at[name] = time.time()
            logger.warning("webhook event failed; it is tried again", extra={"spool_file": name, "error": str(exc)})
            raise
        finally:
            with self._lock:
                self._running.discard(name)
        self.spool.remove(name)
        with self._lock:
            self._failed_at.pop(name, None)
        return {"spool_file": name, "results": results}


class ReconcileThread:
    """A daemon thread that runs :meth:`WebhookIntake.reconcile` every ``every_s`` seconds."""

    _started: "weakref.WeakSet[ReconcileThread]" = weakref.WeakSet()

    def __init__(self, intake: WebhookIntake, every_s: float = RECONCILE_EVERY_S) -> None:
        self.intake, self.every_s = intake, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-spool", daemon=True)

    def start(self) -> "ReconcileThread":
        self._thread.start()
        ReconcileThread._started.add(self)
        return self

    def stop(self) -> None:
        self._stop.set()

    @classmethod
    def stop_all(cls) -> None:
        """Stop the threads of every app this process created (a process that makes apps one
        after the other, as the tests do, so an old app's spool is not replayed into a new Redis db)."""
        for thread in list(cls._started):
            thread.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.intake.reconcile()
            except Exception:  # noqa: BLE001 - keep trying; the files stay on disk
                logger.exception("reconciling the webhook spool failed")
