"""``python -m backend <command>``.

* ``serve [--host H] [--port P] [--workers N] [--threads N] [--dev]``: the web process; gunicorn
  with ``backend._wsgi:app`` when installed (the production path), else (or with ``--dev``)
  Flask's development server.
* ``worker [--queues inference,batch,training] [--burst] [--name NAME]``: a queue worker
  (:mod:`backend.inference.worker`) serving every queue by default, inference first; needs ``REDIS_URL``.
* ``auto-annotate --project ID [...]``: predict masks for a whole project (:mod:`backend.autoannotate.annotate`).
* ``versions list|promote NAME|rollback``: the model versions (:mod:`backend.storage.registry`).
* ``fine-tune --project ID [--enqueue]``: fine-tune on a project's examples (:mod:`backend.learning`).
* ``cron [--schedule EXPR | --interval SECONDS]``: the fine-tuning scheduler (:mod:`backend.learning.schedule`).
* ``evaluate --dataset DIR [--every K] [--limit N] [--json OUT] [--plot OUT.png]``: the served version
  measured with the robot user, as served (:mod:`backend.inference.evaluate`).

Every command reads its settings from the environment (:mod:`backend.config`) and returns an exit
code: 0 success, 1 failure, 2 bad usage or configuration.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from redis.exceptions import RedisError

from fcanet_core.cli import BAD_INPUT, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, write_json

from .autoannotate import annotate as autoannotate
from .common.errors import BackendError
from .common.logs import configure_logging
from .config import Settings, get_settings
from .inference.evaluate import evaluate_served, plot_report
from .inference.queueing import QUEUE_BATCH, QUEUE_INFERENCE, QUEUE_TRAINING, unavailable
from .inference.worker import run_worker
from .labelstudio.task_selection import TaskFilter
from .learning import Reason, RunStatus, fine_tune, request_training
from .learning.schedule import build_scheduler
from .storage.registry import ModelRegistry
from .web.app import create_app

logger = logging.getLogger(__name__)


def _serve(args: argparse.Namespace) -> int:
    settings = get_settings()
    host, port = args.host, args.port or settings.port
    if not args.dev:
        try:
            from gunicorn.app.base import BaseApplication
        except ImportError:
            logger.warning("gunicorn is not installed; using Flask's development server")
        else:
            options = {"bind": f"{host}:{port}", "workers": args.workers or settings.workers,
                       "threads": args.threads or settings.threads, "worker_class": "gthread",
                       "timeout": int(settings.predict_timeout) + 30}
            _gunicorn_app(BaseApplication, options).run()
            return EXIT_OK
    create_app(settings).run(host=host, port=port, threaded=True)
    return EXIT_OK


def _gunicorn_app(base: type, options: dict[str, Any]) -> Any:
    """A gunicorn application serving ``backend._wsgi:app`` with ``options``."""

    class WsgiApplication(base):  # type: ignore[misc, valid-type]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from ._wsgi import app

            return app

    return WsgiApplication()


def _worker(args: argparse.Namespace) -> int:
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    run_worker(get_settings(), queues, burst=args.burst, name=args.name)
    return EXIT_OK


def _auto_annotate(args: argparse.Namespace) -> int:
    summary = autoannotate.run_batch(get_settings(), args.project, only_missing=args.only_missing,
                                     task_filter=TaskFilter.parse(args.filter),
                                     center_click=args.center_click, wait=args.wait, job_timeout=args.job_timeout)
    report = summary.to_dict()
    if args.json:
        write_json(report, args.json)
    print(f"project {report['project']} (model {report['model_version']}, {report['mode']}, "
          f"{report['workers']} worker(s)): {report['done']} done, {report['skipped']} skipped, "
          f"{report['failed']} failed, {report['pending']} pending, {report['filtered_out']} filtered out "
          f"in {report['wall_s']:.1f} s ({report['tasks_per_minute']} tasks/min)")
    for reason, n in report["skip_reasons"].items():
        print(f"  skipped {n}: {reason}")
    for failure in report["failures"]:
        print(f"  failed task {failure['task_id']}: {failure['reason']}")
    return EXIT_FAILED if report["failed"] or (args.wait and report["pending"]) else EXIT_OK


def _add_auto_annotate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("auto-annotate", help="predict masks for a whole project from its prompts",
                                 description=(autoannotate.__doc__ or "").split("\n\n")[0])
    parser.add_argument("--project", type=int, required=True, help="Label Studio project id")
    parser.add_argument("--only-missing", action=argparse.BooleanOptionalAction, default=True,
                        help="skip tasks that have a prediction of the current model version (default on); "
                             "--no-only-missing predicts them again and replaces it")
    parser.add_argument("--filter", action="append", default=[], metavar="EXPR",
                        help="id=1,5,10-20 | annotated=yes|no | FIELD~REGEX (repeatable; all must hold)")
    parser.add_argument("--center-click", action="store_true",
                        help="tasks without prompts get one positive click at the image centre")
    parser.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                        help="with REDIS_URL: wait for the jobs and report (default on), or only enqueue")
    parser.add_argument("--job-timeout", type=int, default=autoannotate.JOB_TIMEOUT,
                        help=f"seconds one task's job may run (default {autoannotate.JOB_TIMEOUT})")
    parser.add_argument("--json", help="write the summary (counts, failures, tasks per minute) here")
    parser.set_defaults(func=_auto_annotate)


def _registry() -> ModelRegistry:
    settings = get_settings()
    return ModelRegistry(settings.model_dir, settings.fcanet_checkpoint)


def _versions_list(args: argparse.Namespace) -> int:
    registry = _registry()
    current = registry.current().name
    rows = []
    for version in registry.list():
        gate = version.metrics.get("gate") or {}
        decision = {k: gate[k] for k in ("promote", "verdict", "why") if k in gate}
        rows.append({**asdict(version), "current": version.name == current, "decision": decision or None})
    print(json.dumps(rows, indent=1))
    return EXIT_OK


def _versions_promote(args: argparse.Namespace) -> int:
    print(json.dumps({"current": _registry().promote(args.name).name}))
    return EXIT_OK


def _versions_rollback(args: argparse.Namespace) -> int:
    print(json.dumps({"current": _registry().rollback().name}))
    return EXIT_OK


def _add_versions(commands: argparse._SubParsersAction) -> None:
    versions = commands.add_parser("versions", help="list, promote or roll back model versions")
    actions = versions.add_subparsers(dest="versions_action", required=True)
    actions.add_parser("list", help="every version as JSON, the current one marked").set_defaults(func=_versions_list)
    promote = actions.add_parser("promote", help="make a stored version current")
    promote.add_argument("name")
    promote.set_defaults(func=_versions_promote)
    actions.add_parser("rollback", help="return to the previously current version").set_defaults(
        func=_versions_rollback)


def _fine_tune(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.enqueue:
        result = request_training(args.project, settings, Reason.MANUAL)
    else:
        result = fine_tune(args.project, Reason.MANUAL, settings)
    print(json.dumps(result, indent=1))
    return EXIT_OK if result.get("status") != RunStatus.SKIPPED or args.enqueue else EXIT_FAILED


def _add_fine_tune(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("fine-tune", help="fine-tune on a project's collected examples")
    parser.add_argument("--project", required=True, help="Label Studio project id")
    parser.add_argument("--enqueue", action="store_true",
                        help="put a job on the training queue instead of running here (needs REDIS_URL)")
    parser.set_defaults(func=_fine_tune)


def _cron(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.interval is not None and args.interval < 1:
        raise ValueError("--interval must be at least 1 second")
    scheduler = build_scheduler(settings, args.schedule, args.interval)
    try:
        scheduler.start()
    except RedisError as exc:
        raise unavailable(settings, exc) from None
    return EXIT_OK


def _evaluate(args: argparse.Namespace) -> int:
    report = evaluate_served(get_settings(), args.dataset, args.every, args.limit, args.max_clicks, progress=True)
    if args.json:
        write_json(report, args.json)
    if args.plot:
        plot_report(report, args.plot)
    print(json.dumps({k: v for k, v in report.items() if k != "instances"}))
    return EXIT_OK


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("evaluate", help="NoC of the served version on a labelled dataset, as served")
    parser.add_argument("--dataset", required=True, help="folder with index.csv or in an official layout")
    parser.add_argument("--every", type=int, default=1, help="every K-th instance (default 1: all)")
    parser.add_argument("--limit", type=int, help="at most N instances")
    parser.add_argument("--max-clicks", type=int, default=20, help="robot clicks per instance (default 20)")
    parser.add_argument("--json", type=Path, help="write the full report (every instance) here")
    parser.add_argument("--plot", type=Path, help="write the mIoU curve here (PNG)")
    parser.set_defaults(func=_evaluate)


def _add_cron(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("cron", help="run the scheduler of periodic fine-tuning (rq cron)")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--schedule", default=None, help="cron expression, local time (default TRAIN_SCHEDULE)")
    when.add_argument("--interval", type=int, default=None, help="run every N seconds instead")
    parser.set_defaults(func=_cron)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available command."""
    parser = argparse.ArgumentParser(prog="python -m backend", description="FCA-Net Label Studio ML backend")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the web process (Label Studio ML backend API)")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    serve.add_argument("--port", type=int, help=f"port (default $PORT or {Settings.port})")
    serve.add_argument("--workers", type=int, help=f"gunicorn worker processes (default $WORKERS or {Settings.workers})")
    serve.add_argument("--threads", type=int, help=f"threads per worker process (default $THREADS or {Settings.threads})")
    serve.add_argument("--dev", action="store_true", help="use Flask's development server")
    serve.set_defaults(func=_serve)

    worker = commands.add_parser("worker", help="run a queue worker (needs REDIS_URL)")
    worker.add_argument("--queues", default=f"{QUEUE_INFERENCE},{QUEUE_BATCH},{QUEUE_TRAINING}",
                        help="comma-separated queues in priority order (default inference,batch,training: "
                             "all of them, clicks first)")
    worker.add_argument("--burst", action="store_true", help="quit when the queues are empty")
    worker.add_argument("--name", help="worker name (default: RQ's random name)")
    worker.set_defaults(func=_worker)

    _add_auto_annotate(commands)
    _add_versions(commands)
    _add_fine_tune(commands)
    _add_cron(commands)
    _add_evaluate(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; returns its exit code."""
    try:
        settings = get_settings()
    except ValueError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    configure_logging(settings.log_level, settings.log_format)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BackendError as exc:
        logger.error("command failed", extra={"command": args.command, "detail": exc.detail})
        print(f"error: {exc.detail}", file=sys.stderr)
        return EXIT_FAILED
    except BAD_INPUT as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
