"""Project-level auto-annotation: a mask prediction for every task from the prompts it carries.

``python -m backend auto-annotate --project ID [--only-missing/--no-only-missing]
[--filter EXPR ...] [--center-click] [--wait/--no-wait] [--job-timeout S] [--json OUT]``

Prompts of a task: the result regions of its newest annotation, draft or prediction (by
``updated_at``; on a tie annotation before draft before prediction) that holds keypoints or
rectangles. Cancelled annotations are ignored. Each region is one object, read by
:func:`backend.labelstudio.prompts.parse_prompt` on its own: a positive keypoint is the object's first click,
a rectangle gives the prompts module's box (centre click + zoom region), a negative keypoint
alone is no object. Each object becomes one mask through the same path as an interactive click
(:func:`backend.inference.jobs.run_segment`), and the task gets one Label Studio prediction holding every
object's result, with the current ``model_version`` and the mean object score. With
``--center-click``, a task without prompts gets one positive click at the image centre.

Idempotent and resumable: a task that already has a non-empty prediction of the current model
version is skipped (checked when listing and again by the job), so a rerun or a run after a crash
only does what is missing; ``--no-only-missing`` predicts again and replaces the current version's
predictions. A task whose masks all come out empty gets no prediction (it is reported skipped), and
an empty prediction of the current version stored earlier does not count as done: it is replaced.
With ``REDIS_URL`` set there is one job per task on the ``batch`` queue, so several workers share a
project, and each job first claims its task in Redis, so two runs started at once never predict
the same task twice (the later one reports it as skipped); without it the tasks run in this process.
One failing task (a broken image, a malformed region) is reported and never stops the batch.

``--filter`` (repeatable, all must hold): ``id=1,5,10-20``, ``annotated=yes|no``, or
``FIELD~REGEX`` (a regular expression searched in the task's ``data[FIELD]``).

The prompts → prediction step is :mod:`backend.labelstudio.task_prediction`, shared with Label Studio's
"Retrieve predictions" (``/predict`` with ``context: null``), which so gives the same masks.
"""
from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Iterator, Sequence

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, get_current_job
from rq.job import Job, JobStatus
from rq.worker import Worker
from tqdm import tqdm

from ..common.errors import BackendError
from ..common.locks import OwnerLock
from ..config import Settings, get_settings
from ..inference.engine import get_engine
from ..inference.jobs import run_segment
from ..inference.queueing import QUEUE_BATCH, enqueue, redis_connection, unavailable
from ..labelstudio.client import Credentials, LabelStudioClient
from ..labelstudio.prompts import LabelConfig
from ..labelstudio.task_prediction import center_prompt, predict_prompts, prompts_from_task
from ..labelstudio.task_selection import TaskFilter, has_version, list_tasks
from ..storage.registry import ModelRegistry

logger = logging.getLogger(__name__)

#: Import path of :func:`annotate_task`, as enqueued on the ``batch`` queue.
ANNOTATE_JOB = "backend.autoannotate.annotate_task"
#: Seconds between polls of the batch jobs; finished job results are kept this long in Redis.
POLL_S = 0.5
RESULT_TTL = 24 * 3600



class TaskStatus(StrEnum):
    """What happened to one task."""

    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


#: Seconds one task's job may run (``--job-timeout``); a task's claim lives as long.
JOB_TIMEOUT = 600
#: Prefix of the per-task claim keys.
CLAIM_PREFIX = "fcanet:autoannotate:claim"


# ------------------------------------------------------------------------------------ one task
@dataclass(frozen=True)
class TaskJob:
    """What a worker needs to auto-annotate one task."""

    task_id: int
    label_config: str
    credentials: Credentials
    center_click: bool = False
    replace: bool = False

    def to_payload(self) -> dict:
        return {"task_id": self.task_id, "label_config": self.label_config,
                "credentials": self.credentials.to_dict(), "center_click": self.center_click,
                "replace": self.replace}

    @classmethod
    def from_payload(cls, payload: dict) -> "TaskJob":
        return cls(int(payload["task_id"]), str(payload["label_config"]),
                   Credentials.from_dict(payload.get("credentials")), bool(payload.get("center_click")),
                   bool(payload.get("replace")))


@dataclass(frozen=True)
class TaskOutcome:
    """What happened to one task: ``done``, ``skipped`` or ``failed``, and why."""

    task_id: int
    status: TaskStatus
    reason: str = ""
    objects: int = 0
    model_version: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def process_task(job: TaskJob, settings: Settings) -> TaskOutcome:
    """Predict one task and store the prediction in Label Studio.

    Expected failures (image, prompt, Label Studio errors) become a ``failed`` outcome; anything
    else propagates.
    """
    credentials = Credentials.resolve(settings, job.credentials)
    client = LabelStudioClient(credentials, verify_ssl=settings.verify_ssl, timeout=settings.download_timeout)
    try:
        version = get_engine(settings).model_version
        task = client.api("GET", f"/api/tasks/{job.task_id}")
        current = [p["id"] for p in task.get("predictions") or [] if p.get("model_version") == version]
        if has_version(task, version) and not job.replace:
            return TaskOutcome(job.task_id, TaskStatus.SKIPPED, f"has a prediction of model version {version}")
        config = LabelConfig(job.label_config)
        prompts = prompts_from_task(task)
        if not prompts and job.center_click:
            prompts = [center_prompt(task, config, settings, credentials)]
        if not prompts:
            return TaskOutcome(job.task_id, TaskStatus.SKIPPED, "no keypoint or rectangle prompts")
        prediction = predict_prompts(task, prompts, config, functools.partial(run_segment, settings=settings),
                                     credentials, version)
        if not prediction["result"]:
            return TaskOutcome(job.task_id, TaskStatus.SKIPPED, "every mask came out empty: no prediction stored")
        client.api("POST", "/api/predictions", json={"task": job.task_id, **prediction})
        for prediction_id in current:
            client.api("DELETE", f"/api/predictions/{prediction_id}")
    except BackendError as exc:
        logger.warning("auto-annotation failed", extra={"task_id": job.task_id, "detail": exc.detail})
        return TaskOutcome(job.task_id, TaskStatus.FAILED, exc.detail)
    logger.info("auto-annotated", extra={"task_id": job.task_id, "objects": len(prompts),
                                         "model_version": prediction["model_version"]})
    return TaskOutcome(job.task_id, TaskStatus.DONE, objects=len(prompts), model_version=prediction["model_version"])


def annotate_task(payload: dict) -> dict:
    """Worker job on the ``batch`` queue: :func:`process_task` for one task; returns the outcome.

    The task is claimed first (see :func:`task_claim`), so two runs over the same project never
    predict one task twice at the same time: the later one skips it.
    """
    job, settings = TaskJob.from_payload(payload), get_settings()
    current = get_current_job()
    ttl = int(current.timeout) if current is not None and current.timeout else JOB_TIMEOUT
    key = claim_key(Credentials.resolve(settings, job.credentials).url, job.task_id)
    with task_claim(redis_connection(settings), key, ttl) as claimed:
        if not claimed:
            busy = "another auto-annotation run is working on it"
            return TaskOutcome(job.task_id, TaskStatus.SKIPPED, busy).to_dict()
        return process_task(job, settings).to_dict()


def claim_key(label_studio_url: str | None, task_id: int) -> str:
    """Redis key that marks a task of a Label Studio server as being auto-annotated."""
    return f"{CLAIM_PREFIX}:{label_studio_url or '-'}:{task_id}"


@contextmanager
def task_claim(connection: Redis, key: str, ttl: int) -> Iterator[bool]:
    """Claim ``key`` for ``ttl`` seconds (the job's timeout); yields whether this caller got it.

    The claim is released on exit (only if it is still ours: it may have expired and been taken);
    a worker killed mid-task leaves it to expire with the TTL.
    """
    claim = OwnerLock(connection, key, ttl)
    claimed = claim.try_acquire()
    try:
        yield claimed
    finally:
        if claimed:
            claim.release()


# -------------------------------------------------------------------------------------- batch
@dataclass
class BatchSummary:
    """The outcome of an auto-annotation run."""

    project: int
    model_version: str
    mode: str  # "in-process" or "queued"
    workers: int
    filtered_out: int = 0
    outcomes: list[TaskOutcome] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)  # enqueued but not finished (queued mode)
    wall_s: float = 0.0

    def count(self, status: TaskStatus) -> int:
        """Number of tasks with this outcome status."""
        return sum(o.status == status for o in self.outcomes)

    def to_dict(self) -> dict:
        """JSON-ready: counts, failures with reasons, skip reasons, throughput."""
        done = self.count(TaskStatus.DONE)
        return {
            "project": self.project, "model_version": self.model_version, "mode": self.mode,
            "workers": self.workers, "tasks": len(self.outcomes) + len(self.pending),
            "filtered_out": self.filtered_out, "done": done, "skipped": self.count(TaskStatus.SKIPPED),
            "failed": self.count(TaskStatus.FAILED), "pending": len(self.pending), "pending_tasks": self.pending,
            "skip_reasons": dict(Counter(o.reason for o in self.outcomes if o.status == TaskStatus.SKIPPED)),
            "failures": [{"task_id": o.task_id, "reason": o.reason} for o in self.outcomes
                         if o.status == TaskStatus.FAILED],
            "objects": sum(o.objects for o in self.outcomes), "wall_s": round(self.wall_s, 3),
            "tasks_per_minute": round(60.0 * done / self.wall_s, 2) if self.wall_s > 0 else 0.0,
        }


def plan_batch(settings: Settings, project_id: int, *, only_missing: bool = True,
               task_filter: TaskFilter = TaskFilter(), center_click: bool = False) -> tuple[BatchSummary, list[TaskJob]]:
    """List the project's tasks and decide what to do: the summary so far (tasks skipped because they
    have a prediction of the current version) and one job per task to predict.

    Raises:
        BackendError: Label Studio unreachable, refusing the token, or no such project.
    """
    credentials = Credentials.resolve(settings)
    client = LabelStudioClient(credentials, verify_ssl=settings.verify_ssl, timeout=settings.download_timeout)
    label_config = client.api("GET", f"/api/projects/{project_id}")["label_config"]
    if settings.queued:
        version = ModelRegistry(settings.model_dir, settings.fcanet_checkpoint).current().name
    else:
        version = get_engine(settings).model_version
    listed = list_tasks(client, project_id)
    selected = [t for t in listed if task_filter.matches(t)]
    summary = BatchSummary(project_id, version, "queued" if settings.queued else "in-process", workers=1,
                           filtered_out=len(listed) - len(selected))
    todo = []
    for task in selected:
        if only_missing and has_version(task, version):
            summary.outcomes.append(TaskOutcome(task["id"], TaskStatus.SKIPPED,
                                                f"has a prediction of model version {version}"))
        else:
            todo.append(TaskJob(task["id"], label_config, credentials, center_click, replace=not only_missing))
    logger.info("auto-annotation planned", extra={"project": project_id, "tasks": len(todo),
                                                  "model_version": version, "mode": summary.mode})
    return summary, todo


def execute_batch(settings: Settings, jobs: Sequence[TaskJob], summary: BatchSummary, *, wait: bool = True,
                  job_timeout: int = JOB_TIMEOUT, progress: bool = True) -> BatchSummary:
    """Run the jobs (in this process, or on the ``batch`` queue with ``REDIS_URL``) into ``summary``.

    Raises:
        BackendError: Redis unreachable, or (``wait``) no worker serves the ``batch`` queue.
    """
    started = time.perf_counter()
    if settings.queued:
        _run_queued(settings, jobs, summary, wait, job_timeout, progress)
    else:
        for job in tqdm(jobs, desc="auto-annotate", unit="task", disable=not progress):
            summary.outcomes.append(_run_here(job, settings))
    summary.wall_s = time.perf_counter() - started
    return summary


def run_batch(settings: Settings, project_id: int, *, only_missing: bool = True,
              task_filter: TaskFilter = TaskFilter(), center_click: bool = False, wait: bool = True,
              job_timeout: int = JOB_TIMEOUT, progress: bool = True) -> BatchSummary:
    """Auto-annotate a project: :func:`plan_batch`, then :func:`execute_batch`."""
    summary, jobs = plan_batch(settings, project_id, only_missing=only_missing, task_filter=task_filter,
                               center_click=center_click)
    return execute_batch(settings, jobs, summary, wait=wait, job_timeout=job_timeout, progress=progress)


def _run_here(job: TaskJob, settings: Settings) -> TaskOutcome:
    """:func:`process_task` in this process; an unexpected error fails this task only."""
    try:
        return process_task(job, settings)
    except Exception as exc:  # noqa: BLE001 - one task's failure must not stop the batch
        logger.exception("auto-annotation crashed", extra={"task_id": job.task_id})
        return TaskOutcome(job.task_id, TaskStatus.FAILED, f"{type(exc).__name__}: {exc}")


def _run_queued(settings: Settings, todo: Sequence[TaskJob], summary: BatchSummary, wait: bool,
                job_timeout: int, progress: bool) -> None:
    """Enqueue one job per task on ``batch``; with ``wait``, collect the outcomes into ``summary``."""
    connection = redis_connection(settings)
    queue = Queue(QUEUE_BATCH, connection=connection)
    try:
        summary.workers = Worker.count(queue=queue)
    except RedisError as exc:
        raise unavailable(settings, exc) from None
    if wait and todo and not summary.workers:
        raise BackendError("no worker serves the batch queue: start `python -m backend worker --queues batch` "
                           "with the same REDIS_URL, or enqueue only with --no-wait", status=503)
    pending = {enqueue(settings, QUEUE_BATCH, ANNOTATE_JOB, job.to_payload(), connection=connection,
                       job_timeout=job_timeout, result_ttl=RESULT_TTL, failure_ttl=RESULT_TTL,
                       description=f"auto-annotate task {job.task_id}").id: job.task_id for job in todo}
    if not wait:
        summary.pending = sorted(pending.values())
        return
    try:
        with tqdm(total=len(pending), desc="auto-annotate", unit="task", disable=not progress) as bar:
            while pending:
                ids = list(pending)
                for job_id, job in zip(ids, Job.fetch_many(ids, connection=connection)):
                    outcome = _job_outcome(job, pending[job_id], connection)
                    if outcome is not None:
                        del pending[job_id]
                        summary.outcomes.append(outcome)
                        bar.update(1)
                if pending and not Worker.count(queue=queue):
                    logger.error("no worker serves the batch queue any more", extra={"pending": len(pending)})
                    break
                if pending:
                    time.sleep(POLL_S)
    except RedisError as exc:
        raise unavailable(settings, exc) from None
    summary.pending = sorted(pending.values())


def _job_outcome(job: Job | None, task_id: int, connection: Redis) -> TaskOutcome | None:
    """The outcome of a finished job, or ``None`` while it is queued or running on a live worker."""
    if job is None:
        return TaskOutcome(task_id, TaskStatus.FAILED, "the job disappeared from Redis before it finished")
    status = job.get_status(refresh=False)
    if status == JobStatus.FINISHED:
        return TaskOutcome(**job.return_value())
    if status == JobStatus.FAILED:
        result = job.latest_result()
        lines = (result.exc_string or "").strip().splitlines() if result is not None else []
        return TaskOutcome(task_id, TaskStatus.FAILED, lines[-1] if lines else "job failed")
    if status in (JobStatus.STOPPED, JobStatus.CANCELED):
        return TaskOutcome(task_id, TaskStatus.FAILED, f"job {status.value}")
    if status == JobStatus.STARTED and job.worker_name and \
            not connection.exists(Worker.redis_worker_namespace_prefix + job.worker_name):
        return TaskOutcome(task_id, TaskStatus.FAILED, f"worker {job.worker_name} died while running the job")
    return None
