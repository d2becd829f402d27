"""Click round trip through a real Label Studio and the README's serve command, with its phases.

``python -m backend.roundtrip_bench [--images DIR] [--limit-images 5] [--clicks 20] [--json OUT]``

Starts Label Studio 1.23.2 (its cached venv, see :mod:`backend.bench.labelstudio_server`) unless
``--label-studio-url``/``--label-studio-token`` name a running one, and ``bash scripts/serve.sh``
(web process, click worker, training worker) on a free port with a Redis db and a ``MODEL_DIR`` of
its own. It uploads ``--limit-images`` images plus one warm-up image to a new project, connects the
backend as an interactive model, clicks the warm-up image once (model load and runtime artefact are
not counted), then per image a robot annotator makes ``--clicks`` clicks the way the labeling UI
does (``POST /api/ml/{id}/interactive-annotating`` with every keypoint so far), each next click
from the mask Label Studio returned. Every click of an image counts, the first one (image fetch)
included.

The report's ``round_trip_ms`` (``median`` = p50, ``p95``) is the acceptance figure. ``phases_ms`` splits
it with the backend's own log lines (one ``/predict`` request and one ``segmented`` job per click):
``label_studio`` (round trip minus the backend's ``/predict``), ``backend_web`` (``/predict``
minus the job: HTTP, enqueue, dequeue, result hand-back), and inside the worker's job
``image_fetch`` (cache hit after the first click), ``predict`` (the model) and ``encode`` (brush
RLE). ``machine`` gives the CPU and the load average before (``load_average_1min_before``) and after
(``load_average_1min``): numbers taken under load are no acceptance numbers.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Sequence

import numpy as np
import requests

from fcanet_core.cli import free_port, machine_info, run_report, timing_summary
from fcanet_core.data.datasets import Sample, load_samples
from fcanet_core.evaluation.robot import iou

from .annotator import keypoint_region, result_mask, robot_click
from .harness import DEFAULT_REDIS_URL, REPO_ROOT, SHARED, ManagedProcess, bench_parser, claim_redis_db, release_redis_db
from .labelstudio_server import LabelStudioAPI, label_studio_process, wait_for_label_studio

logger = logging.getLogger(__name__)

DEFAULT_IMAGES = SHARED / "data" / "grabcut"
#: Seconds Label Studio and the serve command get to start (minutes on a busy 2-core machine).
STARTUP_S = 900.0


def annotate(api: LabelStudioAPI, ml_id: int, task_id: int, sample: Sample, n_clicks: int) -> dict:
    """``n_clicks`` robot clicks on one task through Label Studio: their latencies and the final IoU."""
    image, gt = sample.load()
    height, width = gt.shape
    pred, clicks, latencies = np.zeros_like(gt), [], []
    for _ in range(n_clicks):
        clicks.append(robot_click(pred, gt, clicks))
        regions = [keypoint_region(c, width, height) for c in clicks]
        started = time.perf_counter()
        reply = api.interactive_annotating(ml_id, task_id, regions)
        latencies.append(time.perf_counter() - started)
        if "data" not in reply:
            raise RuntimeError(f"Label Studio answered click {len(clicks)} on {sample.name} with {reply}")
        pred = result_mask(reply["data"]["result"], height, width)
    return {"name": sample.name, "latencies_s": latencies, "final_iou": iou(pred, gt)}


def log_phases(log_path: Path) -> tuple[list[float], list[dict]]:
    """``/predict`` durations (ms) and ``segmented`` job entries of the backend's JSON log, in order."""
    requests_ms, jobs = [], []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if entry.get("msg") == "request" and entry.get("route") == "/predict":
            requests_ms.append(float(entry["duration_ms"]))
        elif entry.get("msg") == "segmented" and "predict_ms" in entry:
            jobs.append(entry)
    return requests_ms, jobs


def phases(round_trips_s: Sequence[float], predict_ms: Sequence[float], jobs: Sequence[dict]) -> dict:
    """Per-phase percentiles (ms) of the clicks; ``None`` where the log lines do not match the clicks one to one."""
    if not (len(round_trips_s) == len(predict_ms) == len(jobs)):
        return {"unmatched": {"clicks": len(round_trips_s), "predict_requests": len(predict_ms), "jobs": len(jobs)}}
    total = np.asarray(round_trips_s) * 1000
    web = np.asarray(predict_ms)
    job = np.asarray([j["duration_ms"] for j in jobs], dtype=float)

    def ms(values: np.ndarray) -> dict:
        return timing_summary(list(np.asarray(values, dtype=float) / 1000), in_ms=True)

    return {"label_studio": ms(total - web), "backend_web": ms(web - job), "job": ms(job),
            "image_fetch": ms(np.array([j["fetch_ms"] for j in jobs])),
            "predict": ms(np.array([j["predict_ms"] for j in jobs])),
            "encode": ms(np.array([j["encode_ms"] for j in jobs]))}


def serve_process(label_studio_url: str, token: str, redis_url: str, scratch: Path,
                  **settings: str) -> tuple[ManagedProcess, str]:
    """``bash scripts/serve.sh`` (unstarted) against the Label Studio, on a free port, its state and log
    under ``scratch``, with extra environment ``settings``; and its URL."""
    port = free_port()
    env = dict(os.environ, REDIS_URL=redis_url, LABEL_STUDIO_URL=label_studio_url, LABEL_STUDIO_API_KEY=token,
               MODEL_DIR=str(scratch / "model_data"), HOST="127.0.0.1", PORT=str(port), PYTHONUNBUFFERED="1",
               **settings)
    process = ManagedProcess("serve.sh", ["bash", str(REPO_ROOT / "scripts" / "serve.sh")], env, scratch / "serve.log")
    return process, f"http://127.0.0.1:{port}"


def run_bench(images: Path, limit_images: int, clicks: int, redis_server: str, label_studio_url: str | None = None,
              token: str | None = None, log_dir: Path | None = None) -> dict:
    """Start what is needed, click, and return the report (see the module docstring)."""
    samples = load_samples(images, limit=limit_images + 1)
    if len(samples) < 2:
        raise ValueError(f"need at least 2 images in {images} (one warms up), found {len(samples)}")
    warm, measured = samples[0], samples[1:]
    scratch = Path(log_dir or tempfile.mkdtemp(prefix="fcanet-roundtrip-"))
    scratch.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    with ExitStack() as stack:
        if label_studio_url is None:
            process, label_studio_url, root = label_studio_process(scratch / "label-studio")
            stack.callback(process.stop)
            token = wait_for_label_studio(process.start(), label_studio_url, root, STARTUP_S).token
        elif not token:
            raise ValueError("--label-studio-token is required with --label-studio-url")
        redis_url = claim_redis_db(redis_server)
        stack.callback(release_redis_db, redis_url)
        serve, url = serve_process(label_studio_url, token, redis_url, scratch, LOG_LEVEL="INFO", LOG_FORMAT="json")
        stack.callback(serve.stop)
        serve.start().wait_until(lambda: not requests.get(f"{url}/health", timeout=2).json()["warnings"],
                                 "workers on every queue", STARTUP_S)
        api = LabelStudioAPI(label_studio_url, token)
        project = api.create_project(f"roundtrip-{uuid.uuid4().hex[:8]}")
        tasks = api.upload_images(project, [s.image_path for s in samples])
        ml_id = api.connect_backend(project, url)
        annotate(api, ml_id, tasks[warm.name], warm, 1)
        time.sleep(0.5)                                   # the warm-up's log lines reach the file
        earlier = [len(found) for found in log_phases(serve.log_path)]
        runs = [annotate(api, ml_id, tasks[s.name], s, clicks) for s in measured]
        time.sleep(0.5)
        predict_ms, jobs = (found[skip:] for found, skip in zip(log_phases(serve.log_path), earlier))
        health = requests.get(f"{url}/health", timeout=5).json()
    latencies = [t for run in runs for t in run["latencies_s"]]
    firsts = [run["latencies_s"][0] for run in runs]
    return {
        "command": "bash scripts/serve.sh", "label_studio": label_studio_url, "images": [r["name"] for r in runs],
        "clicks_per_image": clicks, "clicks": len(latencies),
        "round_trip_ms": timing_summary(latencies, in_ms=True), "first_click_ms": timing_summary(firsts, in_ms=True),
        "later_clicks_ms": timing_summary([t for run in runs for t in run["latencies_s"][1:]], in_ms=True),
        "phases_ms": phases(latencies, predict_ms, jobs),
        "final_iou_mean": round(float(np.mean([r["final_iou"] for r in runs])), 4),
        "runtimes": health.get("runtimes"), "model_version": health.get("model_version"),
        "machine": {**machine_info(), "load_average_1min_before": round(load_before[0], 2)},
        "logs": str(scratch),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = bench_parser("python -m backend.roundtrip_bench", __doc__)
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES,
                        help="image/ground-truth folder (default %(default)s)")
    parser.add_argument("--limit-images", type=int, default=5, help="images clicked (default 5), one more warms up")
    parser.add_argument("--clicks", type=int, default=20, help="clicks per image (default 20)")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="Redis server; the bench claims a db of its own")
    parser.add_argument("--label-studio-url", help="a running Label Studio instead of starting one")
    parser.add_argument("--label-studio-token", help="its API token (legacy token) with --label-studio-url")
    parser.add_argument("--log-dir", type=Path, help="where process logs go (default: a temp folder)")
    args = parser.parse_args(argv)
    if args.limit_images < 1 or args.clicks < 1:
        parser.error("--limit-images and --clicks must be at least 1")
    return run_report(lambda: run_bench(args.images, args.limit_images, args.clicks, args.redis_url,
                                        args.label_studio_url, args.label_studio_token, args.log_dir), args.json,
                      logger)
