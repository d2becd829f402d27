"""Scheduled fine-tuning with ``rq cron``: ``python -m backend cron`` runs the scheduler.

The scheduler (RQ's :class:`rq.cron.CronScheduler`) puts :func:`scheduled_fine_tune` on the
``training`` queue on ``TRAIN_SCHEDULE`` (a cron expression in local time, default nightly at
03:00). That job requests a fine-tuning for every project with examples added or changed since its
last completed fine-tuning; requests coalesce with any that are already waiting, and the training
job itself skips a project when nothing is new. Run one scheduler per Redis (it only enqueues; the
training workers do the work).
"""
from __future__ import annotations

import logging

from rq.cron import CronScheduler

from ..config import Settings, get_settings
from ..inference.queueing import QUEUE_TRAINING, redis_connection
from . import RESULT_TTL, Reason, example_store, load_state, new_examples, request_training

logger = logging.getLogger(__name__)

CRON_JOB_NAME = "fcanet-scheduled-fine-tune"


def due_projects(settings: Settings) -> list[str]:
    """Projects with at least one example that is new since their last completed fine-tuning."""
    store = example_store(settings)
    return [p for p in store.projects() if new_examples(store.examples(p), load_state(settings, p))]


def scheduled_fine_tune(settings: Settings | None = None) -> dict:
    """Job: request a fine-tuning for each project that has new examples."""
    settings = settings or get_settings()
    requests = {project: request_training(project, settings, Reason.SCHEDULE) for project in due_projects(settings)}
    logger.info("scheduled fine-tuning", extra={"projects": sorted(requests)})
    return {"requested": requests}


def build_scheduler(settings: Settings, schedule: str | None = None, interval: int | None = None) -> CronScheduler:
    """A cron scheduler with :func:`scheduled_fine_tune` registered on the ``training`` queue.

    Args:
        settings: ``REDIS_URL`` is required.
        schedule: cron expression; default ``TRAIN_SCHEDULE``.
        interval: run every this many seconds instead of on a cron expression.
    """
    if not settings.queued:
        raise ValueError("the scheduler needs REDIS_URL (it enqueues on the training queue)")
    scheduler = CronScheduler(connection=redis_connection(settings), logging_level=settings.log_level)
    when = {"interval": interval} if interval else {"cron": schedule or settings.learning.schedule}
    scheduler.register(scheduled_fine_tune, QUEUE_TRAINING, name=CRON_JOB_NAME, job_timeout=600,
                       result_ttl=RESULT_TTL, failure_ttl=RESULT_TTL, **when)
    return scheduler
