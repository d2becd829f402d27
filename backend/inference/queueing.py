"""Where inference runs: RQ queues on Redis when ``REDIS_URL`` is set, else the web process itself.

Queues: ``inference`` (one job per click), ``training`` (fine-tuning), ``batch`` (auto-annotation).

With Redis the web process never loads a model: :class:`QueueRunner` enqueues a
:func:`backend.jobs.segment` job and waits for its result up to ``PREDICT_TIMEOUT``, watching that
the worker running it is alive (its heartbeat key, see :mod:`backend.inference.worker`). Errors come back as
:class:`~backend.common.errors.BackendError` with an HTTP status: Redis unreachable → 503, the job's
worker died → 503, ``PREDICT_TIMEOUT`` passed or the job hit ``JOB_TIMEOUT`` → 504, an image or
prompt problem in the worker → the worker's own status (4xx/502). A job nobody started within
``PREDICT_TIMEOUT`` is removed from the queue, so stale clicks do not pile up.

Without Redis, :class:`InProcessRunner` runs :func:`backend.inference.jobs.run_segment` in the web process
with the process-wide engine, loaded when the runner is made (at app start, not in a request), and
answers 504 when it takes longer than ``PREDICT_TIMEOUT``; the click it gave up on is stopped at its
next stage (:mod:`fcanet_core.inference.cancel`), so it does not hold the engine from the next click.
Both runners share one interface: ``model_version``, ``segment(request) -> dict`` (a Label
Studio click), ``segment_frame(request) -> dict`` (a click on an image sent with the request, as
CVAT does), ``queue_depths() -> dict`` and ``queue_state() -> dict`` (for ``/health``);
:func:`make_runner` picks one from the settings.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any, Callable, Protocol
from urllib.parse import urlsplit, urlunsplit

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from rq import Queue
from rq.exceptions import InvalidJobOperation
from rq.job import Job, JobStatus
from rq.results import Result
from rq.worker import Worker

from fcanet_core.inference.cancel import PredictionStopped

from ..common.deadline import call_within
from ..common.errors import BackendError
from ..config import Settings
from ..storage.registry import ModelRegistry
from .engine import get_engine
from .image_waits import HELD_BY
from .jobs import SEGMENT_FRAME_JOB, SEGMENT_JOB, FrameRequest, SegmentRequest, run_segment, run_segment_frame
from .runtime_state import worker_runtimes

logger = logging.getLogger(__name__)

QUEUE_INFERENCE = "inference"
QUEUE_TRAINING = "training"
QUEUE_BATCH = "batch"
QUEUE_NAMES = (QUEUE_INFERENCE, QUEUE_TRAINING, QUEUE_BATCH)
#: Seconds a finished click result stays in Redis (the web process reads it at once).
RESULT_TTL = 300
#: Seconds a failed click job stays in the failed registry, for inspection (its payload holds
#: the Label Studio token, so not longer than needed).
FAILURE_TTL = 3600
#: Seconds to connect to Redis before answering 503.
CONNECT_TIMEOUT_S = 2.0
#: Seconds ``/health`` waits for Redis (Label Studio allows the whole answer 1 s).
HEALTH_TIMEOUT_S = 0.3
#: Poll period while waiting for a job (blocking read on its result stream in between).
POLL_S = 1
#: A queued click expires this long after PREDICT_TIMEOUT even if the web process could not cancel it.
QUEUED_TTL_MARGIN_S = 10


class QueueUnavailable(BackendError):
    """Redis cannot be reached."""

    status = 503


class WorkerLost(BackendError):
    """The worker running the job stopped sending heartbeats (killed or crashed)."""

    status = 503


class PredictTimeout(BackendError):
    """No result within ``PREDICT_TIMEOUT``, or the job exceeded ``JOB_TIMEOUT``."""

    status = 504


class JobFailed(BackendError):
    """The job failed with an unexpected error."""

    status = 500


def redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def redis_connection(settings: Settings) -> Redis:
    """A Redis client for ``REDIS_URL`` that fails fast (short connect timeout, one retry)."""
    if not settings.redis_url:
        raise QueueUnavailable("REDIS_URL is not set", status=500)
    return Redis.from_url(settings.redis_url, socket_connect_timeout=CONNECT_TIMEOUT_S,
                          retry=Retry(NoBackoff(), 1), health_check_interval=30)


def unavailable(settings: Settings, exc: Exception) -> QueueUnavailable:
    """The 503 error for a Redis failure."""
    return QueueUnavailable(f"the job queue (Redis at {redacted(settings.redis_url or '')}) is unavailable: "
                            f"{exc}. Start Redis, or unset REDIS_URL to run inference in the web process")


def enqueue(settings: Settings, queue_name: str, func: str | Callable[..., Any], *args: Any,
            connection: Redis | None = None, **kwargs: Any) -> Job:
    """Put ``func(*args)`` on a queue (``kwargs`` go to ``Queue.enqueue``: ``job_timeout``, ...).

    Raises:
        QueueUnavailable: Redis cannot be reached.
    """
    try:
        queue = Queue(queue_name, connection=connection or redis_connection(settings))
        job = queue.enqueue(func, *args, **kwargs)
        if not Worker.count(queue=queue):
            logger.warning(f"no worker serves the {queue_name!r} queue: the job waits until one starts "
                           f"(python -m backend worker --queues {queue_name})", extra={"job_id": job.id})
        return job
    except RedisError as exc:
        raise unavailable(settings, exc) from None


def queue_state(connection: Redis) -> dict:
    """``{"queues": {name: {"waiting", "workers"}}, "warnings": [...]}`` (a queue no worker serves warns)."""
    queues = {}
    for name in QUEUE_NAMES:
        queue = Queue(name, connection=connection)
        queues[name] = {"waiting": queue.count, "workers": Worker.count(queue=queue)}
    warnings = [f"no worker serves the {name!r} queue: its jobs wait until `python -m backend worker` serves it"
                for name, state in queues.items() if not state["workers"]]
    return {"queues": queues, "warnings": warnings}


def wait_s(timeout: float, deadline: float | None) -> float:
    """Seconds to wait: ``timeout``, or less when the ``time.monotonic()`` ``deadline`` comes sooner.

    Raises:
        PredictTimeout: the deadline has passed (nothing is started then).
    """
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise PredictTimeout("the request's PREDICT_REQUEST_TIMEOUT passed before this click started")
    return min(timeout, left)


class Runner(Protocol):
    """What the web process needs from an inference backend."""

    @property
    def model_version(self) -> str: ...

    def segment(self, request: SegmentRequest, deadline: float | None = None) -> dict: ...

    def segment_frame(self, request: FrameRequest) -> dict: ...

    def queue_depths(self) -> dict[str, int]: ...

    def queue_state(self) -> dict: ...

    def runtime_state(self) -> dict[str, dict]: ...


class InProcessRunner:
    """Inference inside the web process (no Redis): the engine is loaded when this is made."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = get_engine(settings)

    @property
    def model_version(self) -> str:
        return self.engine.model_version

    def segment(self, request: SegmentRequest, deadline: float | None = None) -> dict:
        """:func:`run_segment` here; :class:`PredictTimeout` when it passes ``PREDICT_TIMEOUT`` (or
        the ``time.monotonic()`` ``deadline`` of the whole request, when sooner)."""
        return self._within_timeout(lambda stop: run_segment(request, self.settings, stop), "segment", deadline)

    def segment_frame(self, request: FrameRequest) -> dict:
        """:func:`run_segment_frame` here; :class:`PredictTimeout` when it passes ``PREDICT_TIMEOUT``."""
        return self._within_timeout(lambda stop: run_segment_frame(request, self.settings, stop), "segment_frame")

    def _within_timeout(self, job: Callable[[threading.Event], dict], name: str,
                        deadline: float | None = None) -> dict:
        """Run ``job(stop)`` on the current model, giving up after ``PREDICT_TIMEOUT`` or at
        ``deadline``; ``stop`` is set then, and the prediction ends at its next stage."""
        waited = wait_s(self.settings.predict_timeout, deadline)
        stop = threading.Event()

        def run() -> dict:
            self.engine.reload_if_changed()
            try:
                return job(stop)
            except PredictionStopped:
                logger.info("click stopped: it passed its deadline", extra={"timeout_s": waited})
                raise

        return call_within(waited, run, lambda: PredictTimeout(
            f"the click took longer than {waited:g}s (PREDICT_TIMEOUT={self.settings.predict_timeout:g}s, or what "
            "was left of the request's PREDICT_REQUEST_TIMEOUT)"), name=name, stop=stop)

    def queue_depths(self) -> dict[str, int]:
        return {}

    def queue_state(self) -> dict:
        """No queue: inference runs here."""
        return {"up": True}

    def runtime_state(self) -> dict[str, dict]:
        """``{"in-process": state}``: the runtime of this process's engine."""
        return {"in-process": self.engine.runtime_state()}


class QueueRunner:
    """Inference by jobs on the ``inference`` queue; this process never loads a model."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.connection = redis_connection(settings)
        self.health_connection = Redis.from_url(settings.redis_url, socket_connect_timeout=HEALTH_TIMEOUT_S,
                                                socket_timeout=HEALTH_TIMEOUT_S, retry=Retry(NoBackoff(), 0))
        self.registry = ModelRegistry(settings.model_dir, settings.fcanet_checkpoint)

    @property
    def model_version(self) -> str:
        """The registry's current version, which the workers serve (read from ``MODEL_DIR``)."""
        return self.registry.current().name

    def segment(self, request: SegmentRequest, deadline: float | None = None) -> dict:
        return self._run(SEGMENT_JOB, request.to_payload(), f"segment task {request.task_id}", deadline)

    def segment_frame(self, request: FrameRequest) -> dict:
        return self._run(SEGMENT_FRAME_JOB, request.to_payload(), f"segment a frame of {len(request.image)} bytes")

    def _run(self, func: str, payload: dict, description: str, deadline: float | None = None) -> dict:
        """Enqueue one click job on ``inference`` and wait for its result (errors: module docstring);
        waiting ends after ``PREDICT_TIMEOUT`` or at ``deadline`` (``time.monotonic()``), when sooner."""
        deadline = time.monotonic() + wait_s(self.settings.predict_timeout, deadline)
        job = enqueue(self.settings, QUEUE_INFERENCE, func, payload,
                      connection=self.connection, job_timeout=self.settings.job_timeout,
                      ttl=int(self.settings.predict_timeout) + QUEUED_TTL_MARGIN_S, result_ttl=RESULT_TTL,
                      failure_ttl=FAILURE_TTL, description=description)
        logger.debug("job enqueued", extra={"job_id": job.id, "description": description})
        try:
            return self._wait(job, deadline)
        except RedisError as exc:
            raise unavailable(self.settings, exc) from None

    def _wait(self, job: Job, deadline: float) -> dict:
        while True:
            result = job.latest_result(timeout=POLL_S)
            if result is not None:
                return self._outcome(job, result)
            try:
                status = job.get_status(refresh=True)
            except InvalidJobOperation:
                raise JobFailed(f"job {job.id} disappeared from Redis before it gave a result") from None
            if status == JobStatus.STARTED and not self._worker_alive(job):
                raise WorkerLost(f"the worker {job.worker_name!r} running job {job.id} stopped sending "
                                 "heartbeats (killed or crashed); the click was not answered, try again")
            holder = job.get_meta(refresh=True).get(HELD_BY) if status == JobStatus.QUEUED else None
            if holder and not self._alive(holder):
                raise WorkerLost(f"the worker {holder!r} holding job {job.id} while its image downloaded stopped "
                                 "sending heartbeats (killed or crashed); the click was not answered, try again")
            if time.monotonic() >= deadline:
                raise self._timed_out(job, status)

    def _outcome(self, job: Job, result: Result) -> dict:
        if result.type == Result.Type.SUCCESSFUL:
            return result.return_value
        job.refresh()
        if "error" in job.meta:
            raise BackendError.from_dict(job.meta["error"])
        text = (result.exc_string or "").strip()
        if "JobTimeoutException" in text:
            raise PredictTimeout(f"inference job {job.id} ran longer than JOB_TIMEOUT={self.settings.job_timeout}s")
        raise JobFailed(f"inference job {job.id} failed unexpectedly; the worker's log has the details")

    def _worker_alive(self, job: Job) -> bool:
        if not job.worker_name:
            job.refresh()                             # the worker's name is stored when it starts the job
        if not job.worker_name:
            return True
        return self._alive(job.worker_name)

    def _alive(self, worker_name: str) -> bool:
        return bool(self.connection.exists(Worker.redis_worker_namespace_prefix + worker_name))

    def _timed_out(self, job: Job, status: JobStatus | None) -> PredictTimeout:
        waited = self.settings.predict_timeout
        if status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED, None):
            with contextlib.suppress(InvalidJobOperation):
                job.cancel()
            workers = Worker.count(queue=Queue(QUEUE_INFERENCE, connection=self.connection))
            if not workers:
                return PredictTimeout(f"no worker started job {job.id} within PREDICT_TIMEOUT={waited:g}s: no "
                                      "worker serves the inference queue; start `python -m backend worker` with "
                                      "the same REDIS_URL")
            return PredictTimeout(f"job {job.id} waited PREDICT_TIMEOUT={waited:g}s in the inference queue: its "
                                  f"{workers} worker(s) were busy with earlier jobs (each may take up to "
                                  f"IMAGE_DOWNLOAD_TIMEOUT={self.settings.download_timeout:g}s to download an "
                                  "image); start more inference workers")
        return PredictTimeout(f"job {job.id} gave no result within PREDICT_TIMEOUT={waited:g}s (status {status})")

    def queue_depths(self) -> dict[str, int]:
        """Jobs waiting per queue."""
        try:
            return {name: Queue(name, connection=self.connection).count for name in QUEUE_NAMES}
        except RedisError as exc:
            raise unavailable(self.settings, exc) from None

    def queue_state(self) -> dict:
        """``{"up": True, "queues", "warnings"}``, or ``{"up": False, "detail"}`` when Redis does not
        answer within ``HEALTH_TIMEOUT_S``."""
        try:
            return {"up": True, **queue_state(self.health_connection)}
        except RedisError as exc:
            return {"up": False, "detail": unavailable(self.settings, exc).detail}

    def runtime_state(self) -> dict[str, dict]:
        """``{worker name: state}`` as the live workers published it (empty when Redis does not answer)."""
        try:
            return worker_runtimes(self.health_connection)
        except RedisError:
            return {}


def make_runner(settings: Settings) -> Runner:
    """:class:`QueueRunner` when ``REDIS_URL`` is set, else :class:`InProcessRunner`."""
    return QueueRunner(settings) if settings.queued else InProcessRunner(settings)
