"""The worker process: loads the model once, serves its queues, follows model promotions.

Worker class. RQ's default ``Worker`` forks a fresh work horse for every job. A model loaded in
the parent would be inherited copy-on-write on CPU but cannot be used after a fork on CUDA, and
whatever a job warms up (the model when loaded lazily, the image LRU cache, Label Studio access
tokens) dies with the horse, so every click would pay for it again. :class:`ResidentWorker` is
an RQ ``SimpleWorker``: jobs run in the worker process itself, so the model, the image cache and
the token cache stay resident and a click costs only its inference.

What ``SimpleWorker`` gives up, and how it is made up for:

* **Liveness during a job.** The forking worker sends heartbeats while it watches its horse;
  ``SimpleWorker`` is busy inside the job and would only beat between jobs (its Redis key lives
  for ``job_timeout + 60`` s after a crash). ``ResidentWorker`` runs a heartbeat thread that
  refreshes its worker key every ``WORKER_HEARTBEAT_TTL / 3`` seconds, and every heartbeat caps
  the key's lifetime at ``WORKER_HEARTBEAT_TTL``. A worker that is killed therefore disappears
  from Redis within that time; the web process checks the key of the worker running its job
  while it waits and fails the click with 503 instead of waiting for ``PREDICT_TIMEOUT``. The
  dead job stays in RQ's StartedJobRegistry until RQ's registry maintenance (run by the next
  worker) moves it to the FailedJobRegistry as abandoned; it is not run again.
* **Isolation.** A job that crashes the interpreter (segfault, out-of-memory kill) takes the
  worker with it: run workers under a supervisor that restarts them (Docker ``restart:``,
  systemd). A job stuck in Python code is stopped by RQ's ``JOB_TIMEOUT`` death penalty
  (SIGALRM works because the job runs in the main thread); one stuck in native code keeps
  heartbeating and surfaces as a 504 in the web process when ``PREDICT_TIMEOUT`` passes.
* **One job at a time.** Run one worker process per GPU (or a few on CPU) for throughput.

The heartbeat thread also registers the worker again when Redis no longer lists it (Redis
restarted without its data), so ``/health`` and auto-annotation see it serving.

Before each job the worker compares the registry's current version with the loaded one and
reloads when a new version was promoted (``InferenceEngine.reload_if_changed``). While it works,
a watcher thread downloads the images of the clicks waiting in the inference queue
(:class:`backend.inference.prefetch.Prefetcher`), and a click whose image is not there yet when its
turn comes waits beside the worker (:mod:`backend.inference.image_waits`): inference runs only on
clicks whose pixels are there, so a slow image source delays no other annotator's click.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Sequence

from redis.exceptions import RedisError
from rq import Queue, worker_registration
from rq.job import Job
from rq.worker import SimpleWorker

from ..config import Settings
from .engine import InferenceEngine, apply_torch_threads, get_engine
from .image_waits import ImageWaits
from .prefetch import Prefetcher
from .queueing import QUEUE_BATCH, QUEUE_INFERENCE, QUEUE_NAMES, redis_connection, unavailable
from .runtime_state import forget_runtime, publish_runtime

logger = logging.getLogger(__name__)

#: Queues whose jobs use the inference model (it is loaded at start when served).
MODEL_QUEUES = (QUEUE_INFERENCE, QUEUE_BATCH)


class ResidentWorker(SimpleWorker):
    """An RQ ``SimpleWorker`` with a heartbeat thread and model-version checks between jobs.

    Args:
        queues: queue names or :class:`rq.Queue` objects, in priority order.
        settings: ``worker_heartbeat_ttl`` (seconds a silent worker counts as dead).
        engine: the loaded inference engine to keep current, or ``None`` (no model served).
        prefetcher: downloads the images of queued clicks ahead of their jobs, or ``None``.
        image_waits: sets aside clicks whose image is still downloading, or ``None`` (they run
            when dequeued, downloading first).
        **kwargs: passed to ``SimpleWorker`` (``connection``, ``name``, ...).
    """

    def __init__(self, queues: Sequence[str | Queue], *, settings: Settings,
                 engine: InferenceEngine | None = None, prefetcher: Prefetcher | None = None,
                 image_waits: ImageWaits | None = None, **kwargs: Any) -> None:
        super().__init__(queues, **kwargs)
        self.engine = engine
        self.prefetcher = prefetcher
        self.image_waits = image_waits
        self.liveness_ttl = settings.worker_heartbeat_ttl
        self._stop_beating = threading.Event()
        self._beater = threading.Thread(target=self._beat, name="rq-heartbeat", daemon=True)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat with the key's lifetime capped at ``WORKER_HEARTBEAT_TTL``; also publishes
        which runtime serves the model (:mod:`backend.inference.runtime_state`)."""
        super().heartbeat(min(timeout or self.liveness_ttl, self.liveness_ttl), pipeline=pipeline)
        self._publish_runtime()

    def _publish_runtime(self) -> None:
        if self.engine is not None:
            publish_runtime(self.connection, self.name, self.engine.runtime_state(), self.liveness_ttl)

    def _beat(self) -> None:
        while not self._stop_beating.wait(self.liveness_ttl / 3):
            try:
                self._register_again_if_lost()
                self.heartbeat()
            except RedisError as exc:
                logger.warning("heartbeat failed", extra={"worker": self.name, "error": str(exc)})

    def _register_again_if_lost(self) -> None:
        """Register again when Redis no longer lists this worker (it restarted without its data),
        so ``/health`` and auto-annotation see the worker that is serving."""
        if self.connection.sismember(self.redis_workers_keys, self.key):
            return
        with self.connection.pipeline() as pipeline:
            pipeline.hset(self.key, mapping=self.serialize())
            worker_registration.register(self, pipeline)
            pipeline.execute()
        logger.warning("the worker's registration was gone from Redis (restarted without its data?): "
                       "registered again", extra={"worker": self.name})

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        """Register with Redis (RQ), then start the heartbeat thread and the prefetcher."""
        super().bootstrap(*args, **kwargs)
        self._beater.start()
        if self.prefetcher is not None:
            self.prefetcher.watch(Queue(QUEUE_INFERENCE, connection=self.connection))

    def teardown(self) -> None:
        """Stop the heartbeat thread and the prefetcher, then unregister (RQ)."""
        self._stop_beating.set()
        if self.prefetcher is not None:
            self.prefetcher.shutdown()
        if self.image_waits is not None:
            self.image_waits.put_back_all()
        if self._beater.is_alive():
            self._beater.join(timeout=5)
        with contextlib.suppress(RedisError):
            forget_runtime(self.connection, self.name)
        super().teardown()

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Set the job aside while its image downloads; else switch to a newly promoted model
        version if there is one, then run the job."""
        if self.image_waits is not None and self.image_waits.set_aside(job, queue, self.name):
            return
        if self.engine is not None and self.engine.reload_if_changed():
            self._publish_runtime()
        super().execute_job(job, queue)


def run_worker(settings: Settings, queues: Sequence[str], *, burst: bool = False, name: str | None = None) -> bool:
    """Serve ``queues`` until stopped (SIGINT/SIGTERM) or, with ``burst``, until they are empty.

    The model is loaded before the first job when an inference or batch queue is served;
    ``TORCH_THREADS`` caps the threads of everything the worker runs (fine-tuning included).

    Returns:
        Whether any job was run.

    Raises:
        ValueError: an unknown queue name or no ``REDIS_URL``.
        QueueUnavailable: Redis cannot be reached.
    """
    unknown = sorted(set(queues) - set(QUEUE_NAMES))
    if unknown or not queues:
        raise ValueError(f"unknown queue(s) {unknown or queues}; choose from {', '.join(QUEUE_NAMES)}")
    if not settings.queued:
        raise ValueError("the worker needs REDIS_URL (the queue server shared with the web process)")
    connection = redis_connection(settings)
    try:
        connection.ping()
    except RedisError as exc:
        raise unavailable(settings, exc) from None
    apply_torch_threads(settings)
    engine = get_engine(settings) if set(queues) & set(MODEL_QUEUES) else None
    prefetcher = Prefetcher(settings) if QUEUE_INFERENCE in queues else None
    image_waits = ImageWaits(prefetcher) if prefetcher is not None and not burst else None  # burst ends when empty
    worker = ResidentWorker(list(queues), settings=settings, engine=engine, prefetcher=prefetcher,
                            image_waits=image_waits, connection=connection, name=name)
    logger.info("worker starting", extra={"worker": worker.name, "queues": list(queues),
                                          "model_version": engine.model_version if engine else None})
    return worker.work(burst=burst, logging_level=settings.log_level)
