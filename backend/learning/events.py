"""Label Studio webhook events → learning jobs, and the jobs that collect and remove examples.

``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED`` / ``ANNOTATIONS_CREATED`` with a brush or polygon
result → :func:`collect` (download, RLE decoding, atomic store); ``ANNOTATION_DELETED`` /
``ANNOTATIONS_DELETED`` → :func:`remove`; ``START_TRAINING`` → a fine-tuning request. Jobs go to
the ``training`` queue (first in, first out, so an example is stored before the training it
triggers starts); without ``REDIS_URL`` they run in the learning thread of the web process.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from ..common.errors import BadRequest
from ..config import Settings, get_settings
from ..images.fetch import get_fetcher
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


def handle_event(event: str, payload: dict, settings: Settings) -> dict:
    """Answer one Label Studio webhook event by enqueueing work; never blocks on it.

    Returns:
        What was done: ``{"event", "status": "queued"|"coalesced"|"ignored", ...}``.

    Raises:
        BadRequest: a payload that lacks what the event needs.
    """
    try:
        if event in ANNOTATION_EVENTS:
            return _on_annotations(event, payload, settings)
        if event in DELETE_EVENTS:
            project, ids = deleted_annotation_ids(event, payload)
            job_id = _submit(settings, remove, project, ids,
                             description=f"remove annotations {ids} of project {project}")
            return {"event": event, "status": RequestStatus.QUEUED, "project": project, "jobs": [job_id]}
        if event == TRAIN_EVENT:
            if not isinstance(payload, dict) or payload.get("project") is None:
                raise ValueError("START_TRAINING payload lacks the project")
            project = project_key(payload["project"])
            return {"event": event, **request_training(project, settings, Reason.START_TRAINING),
                    "last_run": last_decision(settings, project)}
    except ValueError as exc:
        raise BadRequest(f"{event}: {exc}") from None
    return {"event": event, "status": RequestStatus.IGNORED}


def _on_annotations(event: str, payload: dict, settings: Settings) -> dict:
    jobs, ignored = [], 0
    for record in parse_annotation_events(event, payload):
        if record.has_masks:
            jobs.append(_submit(settings, collect, record,
                                description=f"collect annotation {record.annotation_id} of project {record.project}"))
        elif event == "ANNOTATION_UPDATED":
            jobs.append(_submit(settings, remove, record.project, [record.annotation_id],
                                description=f"remove annotation {record.annotation_id} of project {record.project}"))
        else:
            ignored += 1
    status = RequestStatus.QUEUED if jobs else RequestStatus.IGNORED
    return {"event": event, "status": status, "jobs": jobs, "ignored": ignored}


def _submit(settings: Settings, func: Callable[..., Any], *args: Any, description: str) -> str:
    """Run ``func(*args)`` as a job on the ``training`` queue, or in the local learning thread.

    A queued job is named by the package (``backend.learning.collect``), which re-exports it, so job
    names stay stable whichever module defines the function.
    """
    if settings.queued:
        return enqueue(settings, QUEUE_TRAINING, f"{__package__}.{func.__name__}", *args,
                       job_timeout=COLLECT_TIMEOUT, result_ttl=RESULT_TTL, failure_ttl=RESULT_TTL,
                       description=description).id
    return submit_local(func, *args, settings)


def collect(record: AnnotationRecord, settings: Settings | None = None) -> dict:
    """Job: fetch the task image, decode the masks and store the annotation; may request training."""
    settings = settings or get_settings()
    image = get_fetcher(settings).fetch(record.image_url, record.task_id)
    instances = decode_regions(record.regions, image.shape[0], image.shape[1])
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
