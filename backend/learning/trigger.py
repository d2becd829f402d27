"""Fine-tuning requests and their coalescing: while a project's job waits, a new request returns it.

With Redis a per-project *pending* key holding the waiting job's id is set together with the
enqueue (one transaction); without Redis the learning thread keeps the same map
(:func:`backend.learning.local.request_local`).
"""
from __future__ import annotations

import logging
import uuid

from redis import Redis, WatchError
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from ..config import Settings
from ..inference.queueing import QUEUE_TRAINING, redis_connection, unavailable
from ..labelstudio.annotations import project_key
from .local import request_local
from .state import RESULT_TTL, example_store, load_state, new_examples, pending_key
from .status import Reason, RequestStatus

logger = logging.getLogger(__name__)

#: The fine-tuning job (:func:`backend.learning.finetune.fine_tune`) by its stable name.
FINE_TUNE_JOB = "backend.learning.fine_tune"


def _waiting(connection: Redis, job_id: str) -> bool:
    try:
        status = Job.fetch(job_id, connection=connection).get_status()
    except NoSuchJobError:
        return False
    return status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED)


def request_training(project: str, settings: Settings, reason: str) -> dict:
    """Enqueue a fine-tuning of ``project`` unless one is already waiting (then return that one).

    Returns:
        ``{"status": "queued"|"coalesced", "project", "job_id", "reason"}``.

    Raises:
        ValueError: an unknown ``reason``.
    """
    if reason not in set(Reason):
        raise ValueError(f"unknown training reason {reason!r}; choose one of {[r.value for r in Reason]}")
    reason, project = Reason(reason), project_key(project)
    if not settings.queued:
        return request_local(project, settings, reason)
    key = pending_key(project)
    try:
        connection = redis_connection(settings)
        queue = Queue(QUEUE_TRAINING, connection=connection)
        with connection.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    existing = pipe.get(key)
                    if existing and _waiting(connection, existing.decode()):
                        pipe.unwatch()
                        logger.info("fine-tuning request coalesced", extra={"project": project, "reason": reason})
                        return {"status": RequestStatus.COALESCED, "project": project, "job_id": existing.decode(),
                                "reason": reason}
                    job_id = f"fine-tune-{project}-{uuid.uuid4().hex[:12]}"
                    pipe.multi()
                    pipe.set(key, job_id, ex=RESULT_TTL)
                    queue.enqueue_call(FINE_TUNE_JOB, args=(project, reason.value), job_id=job_id,
                                       timeout=settings.learning.job_timeout, result_ttl=RESULT_TTL,
                                       failure_ttl=RESULT_TTL, pipeline=pipe,
                                       description=f"fine-tune project {project} ({reason})")
                    pipe.execute()
                    break
                except WatchError:
                    continue
    except RedisError as exc:
        raise unavailable(settings, exc) from None
    logger.info("fine-tuning requested", extra={"project": project, "reason": reason, "job_id": job_id})
    return {"status": RequestStatus.QUEUED, "project": project, "job_id": job_id, "reason": reason}


def maybe_request_training(project: str, settings: Settings) -> dict | None:
    """Request a fine-tuning when ``TRAIN_EVERY_N_EXAMPLES`` examples are new; else ``None``."""
    count = len(new_examples(example_store(settings).examples(project), load_state(settings, project)))
    if count < settings.train_every_n_examples:
        return None
    return request_training(project, settings, Reason.EXAMPLES)
