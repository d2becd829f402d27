"""The learning path: webhook events → stored examples → fine-tuning → evaluated candidate → promotion.

* :func:`handle_event` (called by ``FCANetBackend.fit`` inside ``POST /webhook``) only parses the
  payload and enqueues: ``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED`` / ``ANNOTATIONS_CREATED``
  with a brush or polygon result → :func:`collect` (download, RLE decoding, atomic store);
  ``ANNOTATION_DELETED`` / ``ANNOTATIONS_DELETED`` → :func:`remove`; ``START_TRAINING`` → a
  fine-tuning request. Jobs go to the ``training`` queue (first in, first out, so an example is
  stored before the training it triggers starts); without ``REDIS_URL`` they run in one background
  thread of the web process, and fine-tuning in a child process of that thread.
* A fine-tuning request (:func:`request_training`) comes from Start Training, from every
  ``TRAIN_EVERY_N_EXAMPLES`` new examples, from the schedule (:mod:`backend.cron`) or from
  ``python -m backend fine-tune``. Requests coalesce: while a project's job waits in the queue, a
  new request returns that job (a per-project *pending* key, set together with the enqueue). A
  run that finds no example added or changed since the project's last completed run (whatever its
  reason: a Start Training right after an automatic trigger) is skipped instead of training again.
* :func:`fine_tune` holds the project's training lock (a Redis key with a TTL that a heartbeat
  thread extends, so a killed worker frees it within ``TRAIN_LOCK_TTL``; a file lock without
  Redis), splits the examples deterministically into training and held-out sets, measures
  NoC@85/90 of the current version on the held-out examples, fine-tunes from the current version
  with ``fcanet_core.train`` (click loss, simulated and iterative clicks), measures the candidate,
  stores it as an immutable version and promotes it only if neither NoC got worse and the
  current version did not change meanwhile. Nothing outside the run folder is written before
  the candidate is complete, so a crash leaves the current model untouched.

Fine-tuning knobs are environment variables read by :meth:`LearningConfig.from_env`.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import threading
import time
import uuid
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from redis import Redis, WatchError
from redis.exceptions import RedisError
from rq import Queue, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from fcanet_core import Predictor, build_model, load_model
from fcanet_core.checkpoint import resolve_checkpoint
from fcanet_core.datasets import load_samples
from fcanet_core.evaluate import evaluate
from fcanet_core.predictor import model_input_short_side
from fcanet_core.train import TrainConfig, read_train_state, run_progress, train

from .config import Settings
from .errors import BackendError, BadRequest
from .examples import (AnnotationRecord, Example, ExampleStore, decode_regions, deleted_annotation_ids,
                       parse_annotation_events, project_key)
from .images import get_fetcher
from .inference import resolve_device
from .jobs import worker_settings
from .queueing import QUEUE_TRAINING, delete_if_value, enqueue, redis_connection, unavailable
from .registry import ModelRegistry, RegistryError, utc_now, write_json_atomic

logger = logging.getLogger(__name__)

ANNOTATION_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED")
DELETE_EVENTS = ("ANNOTATION_DELETED", "ANNOTATIONS_DELETED")
TRAIN_EVENT = "START_TRAINING"
#: Why a fine-tuning was requested; ``examples`` and ``schedule`` only train when enough is new.
REASONS = ("start_training", "examples", "schedule", "manual")
KEY_PREFIX = "fcanet:learning"
#: Seconds a finished or failed learning job stays in Redis for inspection.
RESULT_TTL = 7 * 24 * 3600
#: Collect and remove jobs are small; this bounds a stuck download.
COLLECT_TIMEOUT = 600


class TrainingBusy(BackendError):
    """Another fine-tuning of the project holds the lock for longer than we may wait."""

    status = 409


# --------------------------------------------------------------------------- configuration

#: Environment variable of each :class:`LearningConfig` field.
ENV_NAMES = {"steps": "FINETUNE_STEPS", "time_budget_s": "FINETUNE_TIME_BUDGET", "batch_size": "FINETUNE_BATCH_SIZE",
             "lr": "FINETUNE_LR", "crop": "FINETUNE_CROP", "holdout_fraction": "HOLDOUT_FRACTION",
             "min_examples": "MIN_TRAIN_EXAMPLES", "eval_max_clicks": "EVAL_MAX_CLICKS", "lock_ttl": "TRAIN_LOCK_TTL",
             "job_timeout": "TRAIN_JOB_TIMEOUT", "schedule": "TRAIN_SCHEDULE", "seed": "FINETUNE_SEED",
             "robot_rounds": "FINETUNE_ROBOT_ROUNDS"}


@dataclass(frozen=True)
class LearningConfig:
    """Fine-tuning and scheduling knobs (environment variable names in :data:`ENV_NAMES`)."""

    #: FINETUNE_STEPS, FINETUNE_BATCH_SIZE, FINETUNE_LR, FINETUNE_CROP: the fine-tuning recipe.
    steps: int = 240
    #: FINETUNE_TIME_BUDGET: seconds of training steps after which the run ends early, its learning
    #: rate decayed on time (0 = no budget: ``steps`` decide). The default keeps a CPU run of 100
    #: examples, gate included, under 10 minutes.
    time_budget_s: float = 330.0
    batch_size: int = 8
    #: Peak learning rate (poly decay). 0.01, the main recipe's peak, adapts to a new domain much
    #: faster than 0.002 (horses, 40 images: NoC@90 -48 % vs -16 %) at some cost on other domains.
    lr: float = 0.01
    crop: int = 256
    #: HOLDOUT_FRACTION: share of a project's annotations held out for evaluation (at least one).
    holdout_fraction: float = 0.2
    #: MIN_TRAIN_EXAMPLES: fewer examples than this → no fine-tuning.
    min_examples: int = 4
    #: EVAL_MAX_CLICKS: robot-user clicks per held-out instance.
    eval_max_clicks: int = 20
    #: TRAIN_LOCK_TTL: seconds a killed trainer keeps the project lock.
    lock_ttl: int = 60
    #: TRAIN_JOB_TIMEOUT: seconds a fine-tuning job may run (and wait for the lock).
    job_timeout: int = 3600
    #: TRAIN_SCHEDULE: cron expression (local time) of the scheduled fine-tuning.
    schedule: str = "0 3 * * *"
    #: FINETUNE_SEED: random seed of the fine-tuning run.
    seed: int = 0
    #: FINETUNE_ROBOT_ROUNDS: up to this many robot clicks on the model's own current predictions
    #: per training step (iterative training, as in the main recipe); 0 = simulated clicks only.
    robot_rounds: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "crop", "min_examples", "eval_max_clicks", "lock_ttl", "job_timeout"):
            if getattr(self, name) < 1:
                raise ValueError(f"{ENV_NAMES[name]} must be positive, got {getattr(self, name)}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"HOLDOUT_FRACTION must lie in (0, 1), got {self.holdout_fraction}")
        if self.min_examples < 2:
            raise ValueError("MIN_TRAIN_EXAMPLES must be at least 2 (one to train on, one to evaluate on)")
        if self.time_budget_s < 0:
            raise ValueError(f"FINETUNE_TIME_BUDGET must not be negative, got {self.time_budget_s}")
        if self.lr <= 0:
            raise ValueError(f"FINETUNE_LR must be positive, got {self.lr}")
        if self.robot_rounds < 0:
            raise ValueError(f"FINETUNE_ROBOT_ROUNDS must not be negative, got {self.robot_rounds}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "LearningConfig":
        """Read the knobs from ``environ`` (default ``os.environ``); malformed values raise ``ValueError``."""
        env = os.environ if environ is None else environ
        types = {f.name: type(getattr(cls(), f.name)) for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, var in ENV_NAMES.items():
            raw = env.get(var, "").strip()
            if raw:
                try:
                    values[name] = types[name](raw)
                except ValueError:
                    kind = types[name].__name__
                    raise ValueError(f"environment variable {var}={raw!r} is not a valid {kind}") from None
        return cls(**values)


def training_dir(settings: Settings, project: str) -> Path:
    """Where a project's training state and run folders live."""
    return Path(settings.model_dir) / "training" / project_key(project)


def example_store(settings: Settings) -> ExampleStore:
    """The example store of ``MODEL_DIR``."""
    return ExampleStore(Path(settings.model_dir) / "examples")


# --------------------------------------------------------------------------- webhook events

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
            return {"event": event, "status": "queued", "project": project, "jobs": [job_id]}
        if event == TRAIN_EVENT:
            if not isinstance(payload, dict) or payload.get("project") is None:
                raise ValueError("START_TRAINING payload lacks the project")
            return {"event": event, **request_training(project_key(payload["project"]), settings, "start_training")}
    except ValueError as exc:
        raise BadRequest(f"{event}: {exc}") from None
    return {"event": event, "status": "ignored"}


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
    status = "queued" if jobs else "ignored"
    return {"event": event, "status": status, "jobs": jobs, "ignored": ignored}


# --------------------------------------------------------------------------- where jobs run

class _LocalJobs:
    """Without Redis: one background thread runs learning jobs in order; fine-tuning runs in a
    child process of it (``fcanet_core.train`` installs signal handlers, which needs a main thread)."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="learning")
        self.pending: dict[str, str] = {}
        self.lock = threading.Lock()

    def submit(self, func: Callable[..., Any], *args: Any) -> str:
        job_id = f"local-{uuid.uuid4().hex[:12]}"
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


def wait_local_jobs() -> None:
    """Block until the learning jobs submitted so far in this process (no Redis) are done."""
    _local().executor.submit(lambda: None).result()


def _submit(settings: Settings, func: Callable[..., Any], *args: Any, description: str) -> str:
    """Run ``func(*args)`` as a job on the ``training`` queue, or in the local learning thread."""
    if settings.queued:
        return enqueue(settings, QUEUE_TRAINING, func, *args, job_timeout=COLLECT_TIMEOUT, result_ttl=RESULT_TTL,
                       failure_ttl=RESULT_TTL, description=description).id
    return _local().submit(func, *args, settings)


# --------------------------------------------------------------------------- collect / remove jobs

def collect(record: AnnotationRecord, settings: Settings | None = None) -> dict:
    """Job: fetch the task image, decode the masks and store the annotation; may request training."""
    settings = settings or worker_settings()
    image = get_fetcher(settings).fetch(record.image_url, record.task_id)
    instances = decode_regions(record.regions, image.shape[0], image.shape[1])
    stored = example_store(settings).put(record, image, instances)
    result = {"project": record.project, "annotation_id": record.annotation_id, "examples": len(stored)}
    if stored:
        result["training"] = maybe_request_training(record.project, settings)
    return result


def remove(project: str, annotation_ids: Sequence[int], settings: Settings | None = None) -> dict:
    """Job: remove the stored examples of deleted annotations."""
    settings = settings or worker_settings()
    removed = example_store(settings).delete(project, annotation_ids)
    return {"project": project, "removed": removed}


# --------------------------------------------------------------------------- training state

def load_state(settings: Settings, project: str) -> dict:
    """The project's training state: ``trained`` (example key → revision of the last completed
    fine-tuning) and ``last_run`` (its summary)."""
    try:
        return json.loads((training_dir(settings, project) / "state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"trained": {}, "last_run": None}


def new_examples(examples: Sequence[Example], state: dict) -> list[Example]:
    """Examples added or changed since the last completed fine-tuning."""
    trained = state.get("trained") or {}
    return [e for e in examples if trained.get(e.key) != e.revision]


def maybe_request_training(project: str, settings: Settings) -> dict | None:
    """Request a fine-tuning when ``TRAIN_EVERY_N_EXAMPLES`` examples are new; else ``None``."""
    count = len(new_examples(example_store(settings).examples(project), load_state(settings, project)))
    if count < settings.train_every_n_examples:
        return None
    return request_training(project, settings, "examples")


# --------------------------------------------------------------------------- requests and coalescing

def _pending_key(project: str) -> str:
    return f"{KEY_PREFIX}:{project}:pending"


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
    """
    if reason not in REASONS:
        raise ValueError(f"unknown training reason {reason!r}; choose one of {REASONS}")
    project = project_key(project)
    if not settings.queued:
        return _request_local(project, settings, reason)
    cfg = LearningConfig.from_env()
    key = _pending_key(project)
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
                        return {"status": "coalesced", "project": project, "job_id": existing.decode(),
                                "reason": reason}
                    job_id = f"fine-tune-{project}-{uuid.uuid4().hex[:12]}"
                    pipe.multi()
                    pipe.set(key, job_id, ex=RESULT_TTL)
                    queue.enqueue_call(fine_tune, args=(project, reason), job_id=job_id, timeout=cfg.job_timeout,
                                       result_ttl=RESULT_TTL, failure_ttl=RESULT_TTL, pipeline=pipe,
                                       description=f"fine-tune project {project} ({reason})")
                    pipe.execute()
                    break
                except WatchError:
                    continue
    except RedisError as exc:
        raise unavailable(settings, exc) from None
    logger.info("fine-tuning requested", extra={"project": project, "reason": reason, "job_id": job_id})
    return {"status": "queued", "project": project, "job_id": job_id, "reason": reason}


def _request_local(project: str, settings: Settings, reason: str) -> dict:
    jobs = _local()
    with jobs.lock:
        if project in jobs.pending:
            return {"status": "coalesced", "project": project, "job_id": jobs.pending[project], "reason": reason}
        job_id = jobs.pending[project] = f"local-fine-tune-{project}-{uuid.uuid4().hex[:8]}"
    jobs.executor.submit(_run_local_fine_tune, project, reason, settings, job_id).add_done_callback(
        lambda f: _log_outcome(job_id, f))
    return {"status": "queued", "project": project, "job_id": job_id, "reason": reason}


def _run_local_fine_tune(project: str, reason: str, settings: Settings, job_id: str) -> dict:
    jobs = _local()
    with jobs.lock:
        jobs.pending.pop(project, None)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return {"job_id": job_id, **pool.submit(fine_tune, project, reason, settings).result()}


# --------------------------------------------------------------------------- the training lock

#: Lua: extend a key only while it still holds the caller's value.
_EXPIRE_IF_VALUE = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) "
                    "end return 0")


class _RedisLock:
    """``SET key token NX EX ttl``, extended by a heartbeat thread, released only by its owner."""

    def __init__(self, connection: Redis, project: str, ttl: int, job: Job | None = None) -> None:
        self.connection, self.key, self.ttl, self.job = connection, f"{KEY_PREFIX}:{project}:lock", ttl, job
        self.token = uuid.uuid4().hex
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._beater = threading.Thread(target=self._beat, name="training-lock", daemon=True)

    def acquire(self, wait_s: float) -> bool:
        deadline = time.monotonic() + wait_s
        while not self.connection.set(self.key, self.token, nx=True, ex=self.ttl):
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(1.0, self.ttl / 4))
        self._beat_job()
        self._beater.start()
        return True

    def _beat_job(self) -> None:
        """Keep the RQ job's execution alive for ``ttl`` only: when the worker is killed, RQ's
        registry maintenance (run by the next worker that starts) marks the job failed soon after."""
        if self.job is None:
            return
        with self.connection.pipeline() as pipe:
            for execution in self.job.get_executions():
                execution.heartbeat(self.job.started_job_registry, self.ttl, pipeline=pipe)
            pipe.execute()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.connection.eval(_EXPIRE_IF_VALUE, 1, self.key, self.token, self.ttl):
                    self.lost.set()
                    logger.error("training lock lost", extra={"lock": self.key})
                    return
                self._beat_job()
            except Exception:  # noqa: BLE001 - a Redis hiccup; the next beat retries
                logger.warning("training lock heartbeat failed", exc_info=True, extra={"lock": self.key})

    def release(self) -> None:
        self._stop.set()
        self._beater.join(timeout=5)
        delete_if_value(self.connection, self.key, self.token)


class _FileLock:
    """An exclusive ``flock`` on the project's lock file; the kernel frees it when the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lost = threading.Event()
        self._file: Any = None

    def acquire(self, wait_s: float) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a")
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self._file.close()
                    return False
                time.sleep(1.0)

    def release(self) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


@contextmanager
def training_lock(settings: Settings, project: str, cfg: LearningConfig,
                  job: Job | None = None) -> Iterator[threading.Event]:
    """Hold the project's training lock (waiting up to ``TRAIN_JOB_TIMEOUT``); yields a *lost* flag.

    With Redis the lock's heartbeat also keeps ``job`` (the running RQ job) alive, see :class:`_RedisLock`.
    """
    if settings.queued:
        lock: _RedisLock | _FileLock = _RedisLock(redis_connection(settings), project, cfg.lock_ttl, job)
    else:
        lock = _FileLock(training_dir(settings, project) / "lock")
    if not lock.acquire(cfg.job_timeout):
        raise TrainingBusy(f"project {project}: another fine-tuning held the lock for {cfg.job_timeout}s")
    try:
        yield lock.lost
    finally:
        lock.release()


# --------------------------------------------------------------------------- fine-tuning

def split_examples(examples: Sequence[Example], fraction: float) -> tuple[list[Example], list[Example]]:
    """Deterministic (train, held-out) split by annotation: an annotation is held out when the hash
    of its id falls below ``fraction``, so it stays on its side as the project grows. At least one
    annotation lands on each side when there are two or more."""
    def score(ann: int) -> float:
        return int(hashlib.sha1(str(ann).encode()).hexdigest()[:12], 16) / float(1 << 48)

    annotations = sorted({e.annotation_id for e in examples}, key=score)
    held = {a for a in annotations if score(a) < fraction}
    if not held and annotations:
        held = {annotations[0]}
    if len(held) == len(annotations) > 1:
        held.discard(annotations[-1])
    return [e for e in examples if e.annotation_id not in held], [e for e in examples if e.annotation_id in held]


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except FileNotFoundError:
        raise
    except OSError:  # another file system
        shutil.copyfile(src, dst)


def _snapshot(examples: Sequence[Example], folder: Path) -> list[Example]:
    """Hard-link (or copy) the examples' files into ``folder`` with an ``index.csv``; returns those
    that were still there (an entry replaced meanwhile is left out)."""
    folder.mkdir(parents=True)
    rows, kept = ["image,mask"], []
    for ex in examples:
        image, mask = f"{ex.key}-image.png", f"{ex.key}-mask.png"
        try:
            _link_or_copy(ex.image_path, folder / image)
            _link_or_copy(ex.mask_path, folder / mask)
        except FileNotFoundError:
            logger.info("example changed while snapshotting; left for the next run", extra={"example": ex.key})
            continue
        rows.append(f"{image},{mask}")
        kept.append(ex)
    (folder / "index.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return kept


def not_worse(before: Mapping[str, float], after: Mapping[str, float]) -> bool:
    """The promotion rule: the candidate needs no more clicks than the current version at IoU 0.85
    and at 0.90 (mean NoC on the same held-out examples)."""
    return after["noc85"] <= before["noc85"] and after["noc90"] <= before["noc90"]


def evaluate_model(model: Any, samples: Sequence[Any], settings: Settings, device: str, max_clicks: int) -> dict:
    """NoC@85/90 with the robot user, predicting the way the backend serves (SIS, zoom-in, short side)."""
    predictor = Predictor(model, device=device, sis=settings.sis, zoom_in=settings.zoom_in,
                          short_side=settings.short_side)
    result = evaluate(predictor, samples, max_clicks)
    return {"n": result.n, "noc85": result.noc85, "noc90": result.noc90, "miou_1": result.miou_curve[0],
            "spc": result.spc}


def fine_tune(project: str, reason: str, settings: Settings | None = None) -> dict:
    """Job: fine-tune ``project``'s examples into a candidate and promote it if it is not worse.

    Returns:
        A summary: ``status`` (``promoted``, ``rejected`` or ``skipped``), ``version``, ``parent``,
        ``metrics`` (``before``/``after`` on the held-out examples), example counts, seconds.
    """
    settings = settings or worker_settings()
    cfg = LearningConfig.from_env()
    project = project_key(project)
    job = get_current_job()
    if job is not None:
        delete_if_value(redis_connection(settings), _pending_key(project), job.id)  # no longer waiting
    with training_lock(settings, project, cfg, job) as lost:
        summary = _FineTune(settings, cfg, project).run(reason, lost)
    logger.info("fine-tuning finished", extra={k: v for k, v in summary.items() if k != "metrics"})
    return summary


class _FineTune:
    """One fine-tuning run of a project (called with the project's training lock held)."""

    def __init__(self, settings: Settings, cfg: LearningConfig, project: str) -> None:
        self.settings, self.cfg, self.project = settings, cfg, project
        self.dir = training_dir(settings, project)
        self.registry = ModelRegistry(settings.model_dir, settings.fcanet_checkpoint)

    def _skip(self, why: str, examples: int, new: int) -> dict:
        logger.info("fine-tuning skipped", extra={"project": self.project, "why": why})
        return {"project": self.project, "status": "skipped", "why": why, "examples": examples, "new_examples": new}

    def run(self, reason: str, lost: threading.Event) -> dict:
        examples = example_store(self.settings).examples(self.project)
        state = load_state(self.settings, self.project)
        new = len(new_examples(examples, state))
        if reason == "examples" and new < self.settings.train_every_n_examples:
            return self._skip(f"{new} new example(s), fewer than TRAIN_EVERY_N_EXAMPLES", len(examples), new)
        if examples and new == 0:
            return self._skip("no new examples since the last fine-tuning", len(examples), new)
        if len(examples) < self.cfg.min_examples:
            return self._skip(f"{len(examples)} example(s), fewer than MIN_TRAIN_EXAMPLES={self.cfg.min_examples}",
                              len(examples), new)
        shutil.rmtree(self.dir / "runs", ignore_errors=True)  # left by a killed run (we hold the lock)
        run_dir = self.dir / "runs" / f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
        try:
            return self._train(reason, examples, run_dir, lost)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)

    def _train(self, reason: str, examples: list[Example], run_dir: Path, lost: threading.Event) -> dict:
        started = time.monotonic()
        device = resolve_device(self.settings.device)
        train_set, holdout = split_examples(examples, self.cfg.holdout_fraction)
        train_set = _snapshot(train_set, run_dir / "train")
        holdout = _snapshot(holdout, run_dir / "holdout")
        if not train_set or not holdout:
            return self._skip("examples changed while snapshotting; nothing left on one side", len(examples), 0)
        parent = self.registry.current()
        parent_model = load_model(parent.checkpoint, device)
        eval_samples = load_samples(run_dir / "holdout")
        before = evaluate_model(parent_model, eval_samples, self.settings, device, self.cfg.eval_max_clicks)
        scale = model_input_short_side(parent_model)  # the candidate sees images at its parent's scale
        config = TrainConfig(arch=parent_model.arch, train_dirs=(str(run_dir / "train"),), pretrained=False,
                             short_side=scale, crop=self.cfg.crop, batch_size=self.cfg.batch_size,
                             max_steps=self.cfg.steps,
                             time_budget_s=self.cfg.time_budget_s, lr=self.cfg.lr, itis_start=0,
                             robot_rounds=self.cfg.robot_rounds,
                             checkpoint_every=self.cfg.steps, log_every=max(1, self.cfg.steps // 10),
                             seed=self.cfg.seed, extra={"project": self.project, "parent": parent.name})
        del parent_model
        model, trained = self._candidate(config, run_dir / "run", parent.checkpoint, device)
        model.meta = {"input_short_side": scale}
        after = evaluate_model(model, eval_samples, self.settings, device, self.cfg.eval_max_clicks)
        accepted = not_worse(before, after)
        name = self.registry.new_name(config.arch, self.project)
        recipe = {k: v for k, v in asdict(config).items() if k not in ("train_dirs", "eval_dir", "extra")}
        self.registry.add_candidate(
            model, name=name, parent=parent.name,
            data={"project": self.project, "train_examples": len(train_set), "holdout_examples": len(holdout),
                  "train_keys": [e.key for e in train_set], "holdout_keys": [e.key for e in holdout]},
            metrics={**after, "dataset": f"project {self.project} held-out examples",
                     "baseline": {"version": parent.name, **before}},
            recipe={**recipe, "reason": reason, "device": device},
            extra={"accepted": accepted, "input_short_side": scale, **trained})
        status = self._promote(name, parent.name, lost) if accepted else "rejected"
        summary = {"project": self.project, "status": status, "reason": reason, "version": name,
                   "parent": parent.name, "metrics": {"before": before, "after": after},
                   "train_examples": len(train_set), "holdout_examples": len(holdout),
                   "seconds": round(time.monotonic() - started, 1), "finished": utc_now()}
        kept = {e.key for e in (*train_set, *holdout)}
        write_json_atomic(self.dir / "state.json", {
            "trained": {e.key: e.revision for e in examples if e.key in kept}, "last_run": summary})
        return summary

    @staticmethod
    def _candidate(config: TrainConfig, out: Path, parent_checkpoint: str, device: str) -> tuple[Any, dict]:
        """Fine-tune from the parent's weights; the candidate model and ``{"steps", "train_seconds"}``."""
        state_path = train(config, out, device=device, init=resolve_checkpoint(parent_checkpoint), progress=False)
        state = read_train_state(state_path)
        if run_progress(state["step"], state["elapsed_s"], config) < 1.0:
            raise RuntimeError(f"fine-tuning stopped at step {state['step']} of {config.max_steps} (signal); "
                               "no candidate was stored")
        model = build_model(config.arch)
        model.load_state_dict(state["model"])
        return model.eval(), {"steps": state["step"], "train_seconds": round(state["elapsed_s"], 1)}

    def _promote(self, name: str, parent: str, lost: threading.Event) -> str:
        """Promote an accepted candidate unless the lock was lost or the current version changed."""
        if lost.is_set():
            logger.error("training lock lost during fine-tuning: candidate stored, not promoted",
                         extra={"project": self.project, "model_version": name})
            return "rejected"
        try:
            self.registry.promote(name, expected_current=parent)
        except RegistryError as exc:
            logger.warning("candidate not promoted: %s", exc, extra={"model_version": name})
            return "rejected"
        return "promoted"


# --------------------------------------------------------------------------- command line

def _cmd_fine_tune(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.enqueue:
        result = request_training(args.project, settings, "manual")
    else:
        result = fine_tune(args.project, "manual", settings)
    print(json.dumps(result, indent=1))
    return 0 if result.get("status") != "skipped" or args.enqueue else 1


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fine-tune --project ID [--enqueue]`` to ``python -m backend``."""
    parser = subparsers.add_parser("fine-tune", help="fine-tune on a project's collected examples")
    parser.add_argument("--project", required=True, help="Label Studio project id")
    parser.add_argument("--enqueue", action="store_true",
                        help="put a job on the training queue instead of running here (needs REDIS_URL)")
    parser.set_defaults(func=_cmd_fine_tune)
