"""Load test of the click path: simulated annotators clicking on real images through ``/predict``.

::

    python -m backend.bench --annotators 8 --clicks 10 [--redis-url URL] [--url WEB_URL]
                            [--images DIR] [--limit-images N] [--torch-threads N] [--json OUT]

Starts (unless ``--url`` targets a running one) the web app (gunicorn ``backend._wsgi:app``) with
``REDIS_URL`` and one worker (``python -m backend worker --queues inference``), serves the images
of ``DIR`` (an ``index.csv`` folder, default the shared GrabCut set) over HTTP on loopback, and lets
``--annotators`` robot users click at once: each segments its own image with ``--clicks`` clicks
sent as smart keypoints, the next click computed from the returned mask and the ground truth
(:func:`fcanet_core.evaluation.robot.next_click`). Every image is requested once before timing (download,
decode, model load).

Then the queue overhead: the same requests are replayed one at a time, alternately to the queued
web app and to a second web app without ``REDIS_URL`` (inference inside the web process); the
overhead of a click is the difference of its two latencies (``queue_overhead_ms``). On a busy
machine that difference also carries CPU-scheduling noise and any speed difference between the
worker's and the web process's inference; ``transport_ms`` (spawned stack only) isolates the queue:
the queued latency minus the job's run time recorded by RQ in the worker.

The JSON report (``--json`` writes it, stdout always gets it)::

    {"annotators", "clicks_per_annotator", "requests", "errors", "error_samples": [str],
     "wall_s", "throughput_rps", "latency_ms": {"n", "mean", "median", "p90", "p95", "max"},
     "final_iou_mean",
     "overhead": {"requests", "errors", "queued_ms": {...}, "inprocess_ms": {...},
                  "queue_overhead_ms": {...}, "transport_ms": {...} | null},
     "model_version", "target": "spawned" | URL, "torch_threads": N | null,
     "machine": {fcanet_core.cli.machine_info's keys},
     "logs": folder of the process logs}

The spawned stack uses a Redis db of its own (:func:`claim_redis_db`: a free one among 8-15 on
``--redis-url``, default ``redis://127.0.0.1:6379``, or the one db that URL names, if empty); it is
emptied again at the end. With ``--url``, the target must accept images from 127.0.0.1 (its
``ALLOWED_HOSTS``, e.g. ``127.0.0.1``) and have a worker running; ``--torch-threads`` then only
applies to the in-process comparison server.

The process, Redis-db and robot-annotator helpers live in :mod:`backend.bench.harness` and
:mod:`backend.bench.annotator`, shared with the tests.
"""
from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import redis
import requests

from fcanet_core import Click
from fcanet_core.data.datasets import Sample, load_samples
from fcanet_core.evaluation.robot import iou

from .annotator import LABEL_CONFIG, keypoint_region, result_mask, robot_click
from fcanet_core.cli import free_port, machine_info, run_report, setup_logging, timing_summary

from .harness import (DEFAULT_REDIS_URL, SHARED, ImageServer, ManagedProcess, bench_parser, claim_redis_db,
                      release_redis_db, web_process, worker_process)

logger = logging.getLogger(__name__)

#: The shared GrabCut set.
DEFAULT_IMAGES = SHARED / "data" / "grabcut"
REQUEST_TIMEOUT_S = 120.0


# ----------------------------------------------------------------------------- requests

@dataclass(frozen=True)
class ClickRequest:
    """One ``/predict`` call of an annotator: a task (image) and the clicks so far."""

    task_id: int
    image_url: str
    width: int
    height: int
    clicks: tuple[Click, ...]

    def body(self) -> dict:
        """The ``/predict`` body Label Studio sends for a smart-keypoint click."""
        regions = [keypoint_region(c, self.width, self.height) for c in self.clicks]
        return {"tasks": [{"id": self.task_id, "data": {"image": self.image_url}}],
                "project": "1.1700000000", "label_config": LABEL_CONFIG,
                "params": {"login": None, "password": None, "context": {"result": regions}}}


@dataclass
class ClickOutcome:
    """What one request gave: latency, the mask (``None`` on error), the error text, model version."""

    latency_s: float
    mask: np.ndarray | None
    error: str | None = None
    model_version: str | None = None


def send(session: requests.Session, url: str, request: ClickRequest) -> ClickOutcome:
    """POST the click to ``url``/predict and decode the mask; HTTP or format problems become errors."""
    started = time.perf_counter()
    try:
        resp = session.post(f"{url}/predict", json=request.body(), timeout=REQUEST_TIMEOUT_S)
        latency = time.perf_counter() - started
        if resp.status_code != 200:
            return ClickOutcome(latency, None, f"HTTP {resp.status_code}: {resp.text[:300]}")
        prediction = resp.json()["results"][0]
        mask = result_mask(prediction["result"], request.height, request.width)
        return ClickOutcome(latency, mask, None, prediction.get("model_version"))
    except (requests.RequestException, ValueError, KeyError, IndexError, TypeError) as exc:
        return ClickOutcome(time.perf_counter() - started, None, f"{type(exc).__name__}: {exc}")


@dataclass
class AnnotatorRun:
    """The requests one robot annotator sent and what came back."""

    requests: list[ClickRequest] = field(default_factory=list)
    outcomes: list[ClickOutcome] = field(default_factory=list)
    final_iou: float = 0.0


def annotate(url: str, task_id: int, sample: Sample, image_url: str, n_clicks: int) -> AnnotatorRun:
    """One robot annotator: ``n_clicks`` clicks on ``sample``, each from the last mask and the GT.

    After an error the annotator goes on from the last good mask.
    """
    gt = sample.gt
    height, width = gt.shape
    pred = np.zeros_like(gt)
    clicks: list[Click] = []
    run = AnnotatorRun()
    with requests.Session() as session:
        for _ in range(n_clicks):
            clicks.append(robot_click(pred, gt, clicks))
            request = ClickRequest(task_id, image_url, width, height, tuple(clicks))
            outcome = send(session, url, request)
            run.requests.append(request)
            run.outcomes.append(outcome)
            if outcome.mask is not None:
                pred = outcome.mask
    run.final_iou = iou(pred, gt)
    return run


# ---------------------------------------------------------------------------------- run

def first_request(sample: Sample, image_url: str) -> ClickRequest:
    """The robot's first click on ``sample`` (task id 0), used to warm a server up."""
    gt = sample.gt
    first = robot_click(np.zeros_like(gt), gt, [])
    return ClickRequest(0, image_url, gt.shape[1], gt.shape[0], (first,))


def warm_up(url: str, requests_: Sequence[ClickRequest]) -> None:
    """Send each request once, untimed; raises ``RuntimeError`` if one fails."""
    with requests.Session() as session:
        for request in requests_:
            outcome = send(session, url, request)
            if outcome.error:
                raise RuntimeError(f"warm-up request to {url} failed: {outcome.error}")


def load_phase(url: str, samples: Sequence[Sample], image_urls: Sequence[str], annotators: int,
               clicks: int) -> tuple[list[AnnotatorRun], float]:
    """All annotators at once (annotator ``i`` on image ``i mod len(samples)``); runs and wall time."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=annotators) as pool:
        futures = [pool.submit(annotate, url, i + 1, samples[i % len(samples)], image_urls[i % len(samples)], clicks)
                   for i in range(annotators)]
        runs = [f.result() for f in futures]
    return runs, time.perf_counter() - started


#: Finished jobs inspected to find the latest one (more than can end within one second).
RECENT_JOBS = 32


def last_job_seconds(redis_url: str) -> float:
    """Run time (start to end, in the worker) of the inference job that finished last."""
    from rq import Queue
    from rq.job import Job

    conn = redis.Redis.from_url(redis_url)
    registry = Queue("inference", connection=conn).finished_job_registry
    # The registry scores jobs by whole seconds, so jobs that ended in the same second are ordered
    # by their random ids: look at the most recent few and take the one that really ended last.
    jobs = [job for job in Job.fetch_many(registry.get_job_ids(-RECENT_JOBS, -1), connection=conn)
            if job is not None and job.ended_at and job.started_at]
    job = max(jobs, key=lambda j: j.ended_at)
    return (job.ended_at - job.started_at).total_seconds()


def overhead_phase(queued_url: str, inprocess_url: str, requests_: Sequence[ClickRequest],
                   redis_url: str | None = None) -> dict:
    """Replay requests one at a time, alternately queued and in-process; latency percentiles.

    With the stack's ``redis_url``, also ``transport_ms``: queued latency minus the job's run time
    in the worker (HTTP, enqueue, dequeue, result hand-back); else ``None``.
    """
    queued, inprocess, diffs, transport, errors = [], [], [], [], 0
    with requests.Session() as session:
        for request in requests_:
            q = send(session, queued_url, request)
            job_s = last_job_seconds(redis_url) if redis_url and not q.error else None
            i = send(session, inprocess_url, request)
            if q.error or i.error:
                errors += 1
                continue
            queued.append(q.latency_s)
            inprocess.append(i.latency_s)
            diffs.append(q.latency_s - i.latency_s)
            if job_s is not None:
                transport.append(q.latency_s - job_s)
    return {"requests": len(queued), "errors": errors, "queued_ms": timing_summary(queued, in_ms=True),
            "inprocess_ms": timing_summary(inprocess, in_ms=True),
            "queue_overhead_ms": timing_summary(diffs, in_ms=True),
            "transport_ms": timing_summary(transport, in_ms=True) if redis_url else None}


@dataclass
class Stack:
    """Processes started by the bench, stopped together."""

    processes: list[ManagedProcess] = field(default_factory=list)

    def add(self, process: ManagedProcess) -> ManagedProcess:
        self.processes.append(process.start())
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def run_bench(annotators: int, clicks: int, images: Path, redis_url: str | None, url: str | None = None,
              limit_images: int = 8, log_dir: Path | None = None, torch_threads: int | None = None) -> dict:
    """Run the load and overhead phases (see the module docstring); returns the report."""
    samples = load_samples(images, limit=limit_images)
    if not samples:
        raise ValueError(f"no images in {images}")
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="fcanet-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack()
    redis_url = None if url else claim_redis_db(redis_url)
    try:
        with ImageServer(images) as image_server:
            image_urls = [image_server.url(s.image_path) for s in samples]
            env = dict(os.environ, MODEL_DIR=str(log_dir / "model_data"),
                       ALLOWED_HOSTS=f"127.0.0.1:{image_server.port}", PYTHONUNBUFFERED="1",
                       LOG_LEVEL=os.environ.get("LOG_LEVEL", "WARNING"))
            env.pop("REDIS_URL", None)
            if torch_threads:
                env.update(OMP_NUM_THREADS=str(torch_threads), MKL_NUM_THREADS=str(torch_threads))
            firsts = [first_request(s, u) for s, u in zip(samples, image_urls)]
            if url is None:
                queued_env = dict(env, REDIS_URL=redis_url)
                port = free_port()
                web = stack.add(web_process(queued_env, port, log_dir / "web.log", threads=max(8, annotators)))
                worker = stack.add(worker_process(queued_env, "inference", log_dir / "worker.log"))
                web.wait_http(f"http://127.0.0.1:{port}/health")
                worker.wait_rq_worker(redis_url)
                url = f"http://127.0.0.1:{port}"
                target = "spawned"
            else:
                url, target = url.rstrip("/"), url.rstrip("/")
            logger.info("warming up %s", url)
            warm_up(url, firsts)
            logger.info("load: %d annotators x %d clicks", annotators, clicks)
            runs, wall = load_phase(url, samples, image_urls, annotators, clicks)

            port = free_port()
            inprocess = stack.add(web_process(env, port, log_dir / "web-inprocess.log"))
            inprocess_url = f"http://127.0.0.1:{port}"
            inprocess.wait_http(f"{inprocess_url}/health")
            warm_up(inprocess_url, firsts)
            logger.info("overhead: replaying %d requests", sum(len(r.requests) for r in runs))
            overhead = overhead_phase(url, inprocess_url, [q for r in runs for q in r.requests],
                                      None if target != "spawned" else redis_url)
    finally:
        stack.stop()
        if redis_url is not None:
            release_redis_db(redis_url)
    outcomes = [o for r in runs for o in r.outcomes]
    errors = [o.error for o in outcomes if o.error]
    versions = sorted({o.model_version for o in outcomes if o.model_version})
    return {
        "annotators": annotators, "clicks_per_annotator": clicks, "requests": len(outcomes),
        "errors": len(errors), "error_samples": errors[:5], "wall_s": round(wall, 3),
        "throughput_rps": round(len(outcomes) / wall, 3) if wall else 0.0,
        "latency_ms": timing_summary([o.latency_s for o in outcomes], in_ms=True),
        "final_iou_mean": round(float(np.mean([r.final_iou for r in runs])), 4),
        "overhead": overhead, "model_version": versions[0] if len(versions) == 1 else versions,
        "target": target, "torch_threads": torch_threads, "machine": machine_info(), "logs": str(log_dir),
    }


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m backend.bench``."""
    parser = bench_parser("python -m backend.bench", __doc__ or "")
    parser.add_argument("--annotators", type=_positive_int, default=8, help="concurrent robot annotators")
    parser.add_argument("--clicks", type=_positive_int, default=10, help="clicks per annotator")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL,
                        help="Redis server (a free db among 8-15 is claimed) or one db (redis://host:port/N, "
                             "must be empty); emptied at the end")
    parser.add_argument("--url", help="target a running web app (with its workers) instead of spawning one")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES,
                        help="folder with index.csv (image,mask); default: the shared GrabCut set")
    parser.add_argument("--limit-images", type=_positive_int, default=8, help="distinct images used")
    parser.add_argument("--torch-threads", type=_positive_int,
                        help="CPU threads per inference process (OMP_NUM_THREADS of the spawned processes; "
                             "default: torch's own choice)")
    parser.add_argument("--log-dir", type=Path, help="where process logs go (default: a temp folder)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench; prints the JSON report. Exit 0 on success, 1 on errors, 2 on bad input."""
    args = build_parser().parse_args(argv)
    setup_logging()
    return run_report(lambda: run_bench(args.annotators, args.clicks, args.images, args.redis_url, args.url,
                                        args.limit_images, args.log_dir, args.torch_threads),
                      args.json, logger, failed=lambda report: bool(report["errors"]))
