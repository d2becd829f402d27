"""Benchmark of learning from corrections: does fine-tuning on a new domain save clicks?

::

    python -m backend.learning_bench [--data DIR] [--annotations 100] [--eval 200] [--checkpoint default]
                                     [--steps N] [--time-budget S] [--lr LR] [--batch-size B] [--crop C]
                                     [--robot-rounds R] [--json OUT]

Starting from ``--checkpoint`` (default: the bundled model, which never saw horses), the first
``--annotations`` images of a seeded shuffle of ``--data`` (an ``index.csv`` folder, default the
shared horse set) go through the webhook path: ``POST /webhook`` with ``ANNOTATION_CREATED``
bodies shaped like the captured Label Studio one (brush RLE of the ground-truth mask, image URL
on a local HTTP server), served by the backend app without Redis, so the examples are collected
by its background thread. Then ``START_TRAINING`` runs the fine-tuning (held-out gate included),
and the next ``--eval`` images are segmented by the robot user with the starting model and with
the fine-tuned candidate. ``--steps``, ``--time-budget``, ``--lr``, ``--batch-size``, ``--crop``,
``--robot-rounds`` set the recipe (``FINETUNE_*``).

JSON report (stdout, and ``--json``)::

    {"data", "annotations", "eval_images", "checkpoint",
     "webhook": {"requests", "accepted", "latency_ms": {"n", "mean", "median", "p90", "p95", "max"}}, "collect_s",
     "fine_tune": {"status", "version", "wall_s", "train_seconds", "steps", "holdout_fraction",
                   "gate_max_clicks", "gate": {"before", "after"},
                   "decision": {"promote", "verdict", "why", "rule", "project", "guard", "guard_set"}, "recipe"},
     "eval": {"before": {"n", "noc85", "noc90", "miou_1", "spc"}, "after": {...},
              "noc90_fewer_clicks_pct", "noc85_fewer_clicks_pct"},
     "machine": {fcanet_core.cli.machine_info's keys, "torch_threads", "nice", "loadavg_start", "loadavg_end"}}
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..config import Settings
from fcanet_core.cli import EXIT_BAD_INPUT, machine_info, run_report, setup_logging, timing_summary

from ..labelstudio.brush import mask_to_rle
from .harness import SHARED, ImageServer, bench_parser

logger = logging.getLogger(__name__)

DEFAULT_DATA = SHARED / "data" / "train" / "horses"
TEMPLATE = SHARED / "reference" / "labelstudio" / "webhook_annotation_created.json"
PROJECT_ID = 1
RECIPE_FLAGS = {"steps": "FINETUNE_STEPS", "time_budget": "FINETUNE_TIME_BUDGET", "lr": "FINETUNE_LR",
                "batch_size": "FINETUNE_BATCH_SIZE", "crop": "FINETUNE_CROP", "robot_rounds": "FINETUNE_ROBOT_ROUNDS"}


def annotation_event(template: dict, annotation_id: int, image_url: str, mask: np.ndarray) -> dict:
    """An ``ANNOTATION_CREATED`` body like ``template`` for one image and its 0/1 object mask."""
    payload = json.loads(json.dumps(template))
    payload["action"] = "ANNOTATION_CREATED"
    payload["project"]["id"] = PROJECT_ID
    payload["task"].update(id=annotation_id, project=PROJECT_ID, data={"image": image_url})
    payload["annotation"].update(id=annotation_id, task=annotation_id, project=PROJECT_ID)
    region = payload["annotation"]["result"][0]
    region.update(original_width=int(mask.shape[1]), original_height=int(mask.shape[0]))
    region["value"]["rle"] = mask_to_rle(mask.astype(np.uint8) * 255)
    return payload


def _fewer_pct(before: float, after: float) -> float:
    return round(100.0 * (before - after) / before, 2) if before else 0.0


def run(data: Path, annotations: int, eval_images: int, checkpoint: str, seed: int, work_dir: Path) -> dict:
    """Feed, fine-tune and evaluate (see the module docstring); returns the report."""
    import torch

    from fcanet_core import load_model
    from fcanet_core.data.datasets import load_samples

    from .. import learning
    from ..inference.engine import resolve_device
    from ..storage.registry import ModelRegistry
    from ..web.app import create_app

    samples = load_samples(data)
    if annotations + eval_images > len(samples):
        raise ValueError(f"{data} has {len(samples)} samples; {annotations} + {eval_images} requested")
    order = np.random.default_rng(seed).permutation(len(samples))
    feed = [samples[i] for i in order[:annotations]]
    held = [samples[i] for i in order[annotations:annotations + eval_images]]
    template = json.loads(TEMPLATE.read_text())
    loadavg_start = os.getloadavg()

    with ImageServer(data) as server:
        settings = Settings.from_env({**os.environ, "MODEL_DIR": str(work_dir / "model_data"),
                                      "FCANET_CHECKPOINT": checkpoint, "ALLOWED_HOSTS": f"127.0.0.1:{server.port}",
                                      "TRAIN_EVERY_N_EXAMPLES": str(annotations + 1), "REDIS_URL": ""})
        client = create_app(settings).test_client()
        latencies, accepted = [], 0
        started = time.perf_counter()
        for k, sample in enumerate(feed, start=1):
            body = annotation_event(template, k, server.url(sample.image_path), (sample.gt == 1))
            tic = time.perf_counter()
            reply = client.post("/webhook", json=body)
            latencies.append(time.perf_counter() - tic)
            accepted += reply.status_code == 201 and reply.get_json()["result"]["status"] == "queued"
        learning.wait_local_jobs()
        collect_s = time.perf_counter() - started
        stored = len(learning.example_store(settings).examples(str(PROJECT_ID)))
        logger.info("%d examples stored in %.1f s", stored, collect_s)

        tic = time.perf_counter()
        start = {"action": "START_TRAINING", "project": template["project"] | {"id": PROJECT_ID}}
        client.post("/webhook", json=start)
        learning.wait_local_jobs()
        fine_tune_wall = time.perf_counter() - tic
    summary = learning.load_state(settings, str(PROJECT_ID)).get("last_run")
    if not summary:
        raise RuntimeError("the fine-tuning produced no result; see the log above")
    registry = ModelRegistry(settings.model_dir, settings.fcanet_checkpoint)
    meta = registry.metadata(summary["version"])
    cfg = settings.learning
    logger.info("fine-tuning %s in %.0f s: %s", summary["status"], fine_tune_wall, summary["version"])

    device = resolve_device(settings.device)
    results = {}
    for label, name in (("before", summary["parent"]), ("after", summary["version"])):
        model = load_model(registry.get(name).checkpoint, device)
        results[label] = learning.evaluate_model(model, held, settings, device, max_clicks=20)
        logger.info("%s (%s): NoC@90 %.2f on %d images", label, name, results[label]["noc90"], len(held))
    return {
        "data": str(data), "annotations": annotations, "eval_images": len(held), "checkpoint": checkpoint,
        "seed": seed, "webhook": {"requests": len(feed), "accepted": accepted, "stored_examples": stored,
                                  "latency_ms": timing_summary(latencies, in_ms=True)},
        "collect_s": round(collect_s, 1),
        "fine_tune": {"status": summary["status"], "version": summary["version"], "parent": summary["parent"],
                      "wall_s": round(fine_tune_wall, 1), "train_seconds": meta.get("train_seconds"),
                      "steps": meta.get("steps"), "holdout_fraction": cfg.holdout_fraction,
                      "gate_max_clicks": cfg.eval_max_clicks,
                      "train_examples": summary["train_examples"], "holdout_examples": summary["holdout_examples"],
                      "gate": summary["metrics"], "decision": summary["gate"], "recipe": meta["recipe"]},
        "eval": {**results, "noc90_fewer_clicks_pct": _fewer_pct(results["before"]["noc90"], results["after"]["noc90"]),
                 "noc85_fewer_clicks_pct": _fewer_pct(results["before"]["noc85"], results["after"]["noc85"])},
        "machine": {**machine_info(), "torch_threads": torch.get_num_threads(), "nice": os.nice(0),
                    "loadavg_start": [round(x, 2) for x in loadavg_start],
                    "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m backend.learning_bench``."""
    parser = bench_parser("python -m backend.learning_bench", __doc__ or "")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="index.csv folder (default: shared horses)")
    parser.add_argument("--annotations", type=int, default=100, help="annotations fed through the webhook")
    parser.add_argument("--eval", type=int, default=200, help="other images for the NoC evaluation")
    parser.add_argument("--checkpoint", default=os.environ.get("FCANET_CHECKPOINT", "default"),
                        help='starting model (default "default", the bundled one)')
    parser.add_argument("--seed", type=int, default=0, help="shuffle of the data")
    parser.add_argument("--steps", type=int, help="FINETUNE_STEPS")
    parser.add_argument("--time-budget", type=float, help="FINETUNE_TIME_BUDGET (seconds of training steps)")
    parser.add_argument("--lr", type=float, help="FINETUNE_LR")
    parser.add_argument("--batch-size", type=int, help="FINETUNE_BATCH_SIZE")
    parser.add_argument("--crop", type=int, help="FINETUNE_CROP")
    parser.add_argument("--robot-rounds", type=int, help="FINETUNE_ROBOT_ROUNDS")
    parser.add_argument("--work-dir", type=Path, help="MODEL_DIR parent (default: a temp folder)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; prints the JSON report. Exit 0 on success, 1 on failure, 2 on bad input."""
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.annotations < 4 or args.eval < 1:
        logger.error("need at least 4 annotations and 1 evaluation image")
        return EXIT_BAD_INPUT
    for flag, var in RECIPE_FLAGS.items():
        value: Any = getattr(args, flag)
        if value is not None:
            os.environ[var] = str(value)  # read into Settings.learning
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="fcanet-learning-bench-"))
    return run_report(lambda: run(args.data, args.annotations, args.eval, args.checkpoint, args.seed, work_dir),
                      args.json, logger)
