"""Load test of the click path: simulated annotators clicking on real images through ``/predict``.

::

    python -m backend.bench --annotators 8 --clicks 10 [--redis-url URL] [--url WEB_URL]
                            [--images DIR] [--limit-images N] [--torch-threads N] [--json OUT]

Starts (unless ``--url`` targets a running one) the web app (gunicorn ``backend._wsgi:app``) with
``REDIS_URL`` and one worker (``python -m backend worker --queues inference``), serves the images
of ``DIR`` (an ``index.csv`` folder, default the shared GrabCut set) over HTTP on loopback, and lets
``--annotators`` robot users click at once: each segments its own image with ``--clicks`` clicks
sent as smart keypoints, the next click computed from the returned mask and the ground truth
(:func:`fcanet_core.robot.next_click`). Every image is requested once before timing (download,
decode, model load).

Then the queue overhead: the same requests are replayed one at a time, alternately to the queued
web app and to a second web app without ``REDIS_URL`` (inference inside the web process); the
overhead of a click is the difference of its two latencies (``queue_overhead_ms``). On a busy
machine that difference also carries CPU-scheduling noise and any speed difference between the
worker's and the web process's inference; ``transport_ms`` (spawned stack only) isolates the queue:
the queued latency minus the job's run time recorded by RQ in the worker.

The JSON report (``--json`` writes it, stdout always gets it)::

    {"annotators", "clicks_per_annotator", "requests", "errors", "error_samples": [str],
     "wall_s", "throughput_rps", "latency_ms": {"p50", "p95", "mean", "max"},
     "final_iou_mean",
     "overhead": {"requests", "errors", "queued_ms": {...}, "inprocess_ms": {...},
                  "queue_overhead_ms": {...}, "transport_ms": {...} | null},
     "model_version", "target": "spawned" | URL, "torch_threads": N | null,
     "machine": {"cpu", "cores", "platform"},
     "logs": folder of the process logs}

The spawned stack uses a Redis db of its own (:func:`claim_redis_db`: a free one among 8-15 on
``--redis-url``, default ``redis://127.0.0.1:6379``, or the one db that URL names, if empty); it is
emptied again at the end. With ``--url``, the target must accept images from 127.0.0.1 (its
``ALLOWED_HOSTS``, e.g. ``127.0.0.1``) and have a worker running; ``--torch-threads`` then only
applies to the in-process comparison server.

The process, Redis-db and robot-annotator helpers (:class:`ManagedProcess`, :func:`free_port`,
:func:`claim_redis_db`, :func:`keypoint_region`, :func:`robot_click`, :func:`result_mask`,
:data:`LABEL_CONFIG`) are shared with the end-to-end tests.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import redis
import requests
from label_studio_sdk.converter.brush import decode_rle

from fcanet_core import Click, next_click
from fcanet_core.datasets import Sample, load_samples
from fcanet_core.robot import iou

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The shared GrabCut set: ``$FCANET_SHARED/data/grabcut`` (``../shared`` beside the repository by default).
DEFAULT_IMAGES = Path(os.environ.get("FCANET_SHARED", REPO_ROOT.parent / "shared")) / "data" / "grabcut"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
#: Redis dbs :func:`claim_redis_db` picks from when given a server URL.
CLAIMABLE_DBS = tuple(range(15, 7, -1))
#: Key marking a claimed db, holding ``host:pid`` of the claiming process.
REDIS_OWNER_KEY = "fcanet:claimed-by"
STARTUP_TIMEOUT_S = 240.0
REQUEST_TIMEOUT_S = 120.0

#: The labeling config of the interactive setup: smart keypoints in, brush mask out, label "Object".
LABEL_CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="tag" toName="image">
    <Label value="Object" background="#FF0000"/>
  </BrushLabels>
  <KeyPointLabels name="tag2" toName="image" smart="true">
    <Label value="Object" smart="true" background="#FFaa00" showInline="true"/>
  </KeyPointLabels>
</View>"""


# ----------------------------------------------------------------------------- processes

def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ManagedProcess:
    """A child process in a session of its own, its output going to ``log_path``."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None

    def start(self) -> "ManagedProcess":
        """Start the process (in the repository root)."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=REPO_ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Poll ``ready()`` until true.

        Raises:
            RuntimeError: with the log tail, when the process exits or ``timeout`` passes first.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before {what}:\n{self.tail()}")
            try:
                if ready():
                    return
            except (requests.RequestException, redis.RedisError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name}: no {what} within {timeout:.0f} s:\n{self.tail()}")

    def wait_http(self, url: str, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Wait until ``GET url`` answers 200."""
        self.wait_until(lambda: requests.get(url, timeout=2).status_code == 200, f"answer at {url}", timeout)

    def wait_rq_worker(self, redis_url: str, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Wait until this process is registered as an RQ worker in ``redis_url``."""
        from rq import Worker

        conn = redis.Redis.from_url(redis_url)
        self.wait_until(lambda: any(w.pid == self.proc.pid for w in Worker.all(connection=conn)),
                        "worker registration in Redis", timeout)

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)

    def tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(log unreadable: {exc})"


def web_process(env: dict[str, str], port: int, log_path: Path, threads: int = 8) -> ManagedProcess:
    """gunicorn serving ``backend._wsgi:app`` on 127.0.0.1:``port`` (not started yet)."""
    return ManagedProcess("web", [
        sys.executable, "-m", "gunicorn", "backend._wsgi:app", "--bind", f"127.0.0.1:{port}",
        "--workers", "1", "--threads", str(threads), "--timeout", "120",
    ], env, log_path)


def worker_process(env: dict[str, str], queues: str, log_path: Path) -> ManagedProcess:
    """``python -m backend worker --queues QUEUES`` (not started yet)."""
    return ManagedProcess(f"worker[{queues}]", [sys.executable, "-m", "backend", "worker", "--queues", queues],
                          env, log_path)


# ---------------------------------------------------------------------------- Redis dbs

def _owner_alive(stamp: str) -> bool:
    """Whether the process that wrote ``stamp`` (``host:pid``) still runs (other hosts: assumed)."""
    host, _, pid = stamp.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def claim_redis_db(url: str) -> str:
    """Claim a Redis db for this process: emptied, and marked with :data:`REDIS_OWNER_KEY`.

    ``url`` names a server (``redis://host:port``: the first usable db of :data:`CLAIMABLE_DBS`)
    or one db (``redis://host:port/N``). A db is usable when it is empty or was claimed by a
    process that is gone; a db holding someone else's keys or claimed by a live process is not.

    Returns:
        The URL of the claimed db; :func:`release_redis_db` empties it again.

    Raises:
        ValueError: Redis does not answer, or no db is usable.
    """
    parts = urlsplit(url)
    path = parts.path.strip("/")
    server = urlunsplit(parts._replace(path="", query="", fragment="")).rstrip("/")
    dbs = [int(path)] if path else list(CLAIMABLE_DBS)
    stamp = f"{socket.gethostname()}:{os.getpid()}"
    try:
        for db in dbs:
            conn = redis.Redis.from_url(f"{server}/{db}", socket_connect_timeout=2)
            owner = conn.get(REDIS_OWNER_KEY)
            if owner is not None and _owner_alive(owner.decode()):
                continue
            if owner is None and conn.dbsize() > 0:
                continue
            conn.flushdb()
            if conn.set(REDIS_OWNER_KEY, stamp, nx=True):
                return f"{server}/{db}"
    except redis.RedisError as exc:
        raise ValueError(f"Redis does not answer at {server}: {exc}") from None
    raise ValueError(f"no usable Redis db at {server} among {dbs}: each holds other data or is in use")


def release_redis_db(url: str) -> None:
    """Empty a db claimed with :func:`claim_redis_db`."""
    redis.Redis.from_url(url).flushdb()


# ------------------------------------------------------------------------ robot annotator

def keypoint_region(click: Click, width: int, height: int, label: str = "Object") -> dict:
    """A smart keypoint region as Label Studio's labeling UI sends it (``x``/``y`` in percent)."""
    return {
        "id": uuid.uuid4().hex[:10], "from_name": "tag2", "to_name": "image", "type": "keypointlabels",
        "origin": "manual", "original_width": width, "original_height": height, "image_rotation": 0,
        "value": {"x": click.x * 100.0 / width, "y": click.y * 100.0 / height, "width": 0.6,
                  "keypointlabels": [label]},
        "is_positive": bool(click.positive),
    }


def robot_click(pred: np.ndarray, gt: np.ndarray, clicks: Sequence[Click]) -> Click:
    """The robot user's next click, at the centre of its pixel (as a person clicks on a pixel)."""
    click = next_click(pred, gt, clicks)
    return Click(click.x + 0.5, click.y + 0.5, click.positive)


def brush_mask(result: dict) -> np.ndarray:
    """0/1 uint8 H×W mask of a ``brushlabels`` result (the alpha of the decoded RLE)."""
    height, width = int(result["original_height"]), int(result["original_width"])
    rgba = np.asarray(decode_rle(result["value"]["rle"]), dtype=np.uint8).reshape(height, width, 4)
    return (rgba[..., 3] >= 128).astype(np.uint8)


def result_mask(results: Sequence[dict], height: int, width: int) -> np.ndarray:
    """The mask of the ``brushlabels`` result among ``results`` (all zeros when there is none)."""
    brushes = [r for r in results if r.get("type") == "brushlabels"]
    if len(brushes) > 1:
        raise ValueError(f"expected at most one brushlabels result, got {len(brushes)}")
    return brush_mask(brushes[0]) if brushes else np.zeros((height, width), np.uint8)


# ------------------------------------------------------------------------------- images

class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        logger.debug("image server: " + format, *args)


@dataclass
class ImageServer:
    """Serves a folder over HTTP on 127.0.0.1 from a background thread (a context manager)."""

    root: Path
    port: int = 0
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)

    def __enter__(self) -> "ImageServer":
        handler = functools.partial(_QuietHandler, directory=str(self.root))
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="image-server", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: Path) -> str:
        """The URL of a file inside the root."""
        return f"http://127.0.0.1:{self.port}/{path.relative_to(self.root).as_posix()}"


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


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p95, mean and max of durations, in milliseconds (zeros for none)."""
    if not seconds:
        return {"p50": 0.0, "p95": 0.0, "mean": 0.0, "max": 0.0}
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {"p50": round(float(np.percentile(ms, 50)), 2), "p95": round(float(np.percentile(ms, 95)), 2),
            "mean": round(float(ms.mean()), 2), "max": round(float(ms.max()), 2)}


def machine_info() -> dict:
    """CPU model, core count and platform of this machine."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform()}


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
    return {"requests": len(queued), "errors": errors, "queued_ms": percentiles_ms(queued),
            "inprocess_ms": percentiles_ms(inprocess), "queue_overhead_ms": percentiles_ms(diffs),
            "transport_ms": percentiles_ms(transport) if redis_url else None}


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
            env = dict(os.environ, MODEL_DIR=str(log_dir / "model_data"), ALLOWED_HOSTS=f"127.0.0.1:{image_server.port}",
                       PYTHONUNBUFFERED="1", LOG_LEVEL=os.environ.get("LOG_LEVEL", "WARNING"))
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
        "latency_ms": percentiles_ms([o.latency_s for o in outcomes]),
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
    parser = argparse.ArgumentParser(prog="python -m backend.bench", description=__doc__.split("\n\n")[0])
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
    parser.add_argument("--json", type=Path, help="also write the report here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench; prints the JSON report. Exit 0 on success, 1 on errors, 2 on bad input."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        report = run_bench(args.annotators, args.clicks, args.images, args.redis_url, args.url,
                           args.limit_images, args.log_dir, args.torch_threads)
    except ValueError as exc:
        logger.error("%s", exc)
        return 2
    except RuntimeError as exc:
        logger.error("%s", exc)
        return 1
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
