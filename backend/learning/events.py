"""Label Studio webhook events → learning jobs, and the jobs that collect and remove examples.

``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED`` / ``ANNOTATIONS_CREATED`` with a brush or polygon
result → :func:`collect` (download, RLE decoding, atomic store); ``ANNOTATION_DELETED`` /
``ANNOTATIONS_DELETED`` → :func:`remove`; ``START_TRAINING`` → a fine-tuning request. Jobs go to
the ``training`` queue (first in, first out, so an example is stored before the training it
triggers starts); without ``REDIS_URL`` they run in the learning thread of the web process.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..common.errors import BadRequest
from ..config import Settings, get_settings
from ..images.fetch import get_fetcher
from ..inference.jobs import errors_in_job_meta
from ..inference.queueing import QUEUE_TRAINING, enqueue
from ..labelstudio.annotations import AnnotationRecord, deleted_annotation_ids, parse_annotation_events, project_key
from ..labelstudio.masks import decode_regions
from .local import submit_local
from .state import RESULT_TTL, example_store, last_decision
from .status import Reason, RequestStatus
from .trigger import maybe_request_training, request_training

ANNOTATION_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED")
DELETE_EVENTS = ("ANNOTATION_DELETED", "ANNOTATIONS_DELETED")
TRAIN_EVENT = "START_TRAINING"
#: Collect and remove jobs are small; this bounds a stuck download.
COLLECT_TIMEOUT = 600


@dataclass(frozen=True)
class PlannedJob:
    """One job an event asks for: ``func(*args)`` on the ``training`` queue."""

    func: Callable[..., Any]
    args: tuple
    description: str


@dataclass(frozen=True)
class EventPlan:
    """The jobs of one webhook event; ``direct`` events (Start Training) are handled without jobs."""

    jobs: tuple[PlannedJob, ...] = ()
    ignored: int = 0
    direct: bool = False

    @property
    def has_work(self) -> bool:
        """Whether the event asks for anything (else it is answered "ignored")."""
        return bool(self.jobs) or self.direct


def plan_event(event: str, payload: dict) -> EventPlan:
    """The jobs ``event`` asks for, from its payload alone (the same plan every time).

    Raises:
        BadRequest: a payload that lacks what the event needs.
    """
    try:
        if event in ANNOTATION_EVENTS:
            return _plan_annotations(event, payload)
        if event in DELETE_EVENTS:
            project, ids = deleted_annotation_ids(event, payload)
            return EventPlan((PlannedJob(remove, (project, ids), f"remove annotations {ids} of project {project}"),))
        if event == TRAIN_EVENT:
            if not isinstance(payload, dict) or payload.get("project") is None:
                raise ValueError("START_TRAINING payload lacks the project")
            project_key(payload["project"])
            return EventPlan(direct=True)
    except ValueError as exc:
        raise BadRequest(f"{event}: {exc}") from None
    return EventPlan()


def handle_event(event: str, payload: dict, settings: Settings, receipt: str | None = None) -> dict:
    """Answer one Label Studio webhook event by enqueueing work; never blocks on it.

    Args:
        receipt: the event's spool name; its jobs then get the ids :func:`job_id` gives, so they
            can be found (and replayed) later.

    Returns:
        What was done: ``{"event", "status": "queued"|"coalesced"|"ignored", ...}``.

    Raises:
        BadRequest: a payload that lacks what the event needs.
        QueueUnavailable: Redis cannot be reached.
    """
    plan = plan_event(event, payload)
    if plan.direct:
        project = project_key(payload["project"])
        return {"event": event, **request_training(project, settings, Reason.START_TRAINING),
                "last_run": last_decision(settings, project)}
    jobs = [submit_planned(settings, job, None if receipt is None else job_id(receipt, i))
            for i, job in enumerate(plan.jobs)]
    result: dict[str, Any] = {"event": event, "status": RequestStatus.QUEUED if jobs else RequestStatus.IGNORED}
    if event in DELETE_EVENTS:
        return {**result, "project": plan.jobs[0].args[0], "jobs": jobs}
    if event in ANNOTATION_EVENTS:
        return {**result, "jobs": jobs, "ignored": plan.ignored}
    return result


def job_id(receipt: str, index: int) -> str:
    """The queue job id of job ``index`` of the spooled event ``receipt``."""
    return f"webhook-{receipt}-{index}"


def _plan_annotations(event: str, payload: dict) -> EventPlan:
    jobs, ignored = [], 0
    for record in parse_annotation_events(event, payload):
        if record.has_masks:
            jobs.append(PlannedJob(collect, (record,),
                                   f"collect annotation {record.annotation_id} of project {record.project}"))
        elif event == "ANNOTATION_UPDATED":
            jobs.append(PlannedJob(remove, (record.project, [record.annotation_id]),
                                   f"remove annotation {record.annotation_id} of project {record.project}"))
        else:
            ignored += 1
    return EventPlan(tuple(jobs), ignored)


def submit_planned(settings: Settings, job: PlannedJob, job_id: str | None = None) -> str:
    """Run a planned job on the ``training`` queue, or in the local learning thread.

    A queued job is named by the package (``backend.learning.collect``), which re-exports it, so job
    names stay stable whichever module defines the function.
    """
    if settings.queued:
        return enqueue(settings, QUEUE_TRAINING, f"{__package__}.{job.func.__name__}", *job.args,
                       job_id=job_id, job_timeout=COLLECT_TIMEOUT, result_ttl=RESULT_TTL, failure_ttl=RESULT_TTL,
                       description=job.description).id
    return submit_local(job.func, *job.args, settings)


def collect(record: AnnotationRecord, settings: Settings | None = None) -> dict:
    """Job: fetch the task image, decode the masks and store the annotation; may request training."""
    settings = settings or get_settings()
    with errors_in_job_meta():
        image = get_fetcher(settings).fetch(record.image_url, record.task_id)
        try:
            instances = decode_regions(record.regions, image.shape[0], image.shape[1])
        except ValueError as exc:
            raise BadRequest(f"annotation {record.annotation_id}: {exc}") from None
    stored = example_store(settings).put(record, image, instances)
    result = {"project": record.project, "annotation_id": record.annotation_id, "examples": len(stored)}
    if stored:
        result["training"] = maybe_request_training(record.project, settings)
    return result


def remove(project: str, annotation_ids: Sequence[int], settings: Settings | None = None) -> dict:
    """Job: remove the stored examples of deleted annotations."""
    settings = settings or get_settings()
    removed = example_store(settings).delete(project, annotation_ids)
    return {"project": project, "removed": removed}
