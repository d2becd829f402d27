"""``python -m backend <command>``.

* ``serve [--host H] [--port P] [--workers N] [--threads N] [--dev]``: the web process; gunicorn
  with ``backend._wsgi:app`` when installed (the production path), else (or with ``--dev``)
  Flask's development server.
* ``worker [--queues inference,batch,training] [--burst] [--name NAME]``: a queue worker
  (:mod:`backend.worker`) serving every queue by default, inference first; needs ``REDIS_URL``.
* Commands of the other backend modules, each added by the module's ``register_cli(subparsers)``:
  ``auto-annotate`` (:mod:`backend.autoannotate`), ``versions`` (:mod:`backend.registry`),
  ``fine-tune`` (:mod:`backend.learning`), ``cron`` (:mod:`backend.cron`). A module that is not
  part of the installation is skipped, so the core commands work without it.

Every command reads its settings from the environment (:mod:`backend.config`) and returns an exit
code: 0 success, 1 failure, 2 bad usage or configuration.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any, Sequence

from .config import Settings
from .errors import BackendError
from .logs import configure_logging
from .queueing import QUEUE_BATCH, QUEUE_INFERENCE, QUEUE_TRAINING

logger = logging.getLogger(__name__)

#: Modules that add their own subcommands through ``register_cli(subparsers)``.
COMMAND_MODULES = ("autoannotate", "registry", "learning", "cron")


def _serve(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
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
            return 0
    from .app import create_app

    create_app(settings).run(host=host, port=port, threaded=True)
    return 0


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
    from .worker import run_worker

    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    run_worker(Settings.from_env(), queues, burst=args.burst, name=args.name)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available command."""
    parser = argparse.ArgumentParser(prog="python -m backend", description="FCA-Net Label Studio ML backend")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the web process (Label Studio ML backend API)")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port (default $PORT or 9090)")
    serve.add_argument("--workers", type=int, help="gunicorn worker processes (default $WORKERS or 1)")
    serve.add_argument("--threads", type=int, help="threads per worker process (default $THREADS or 8)")
    serve.add_argument("--dev", action="store_true", help="use Flask's development server")
    serve.set_defaults(func=_serve)

    worker = commands.add_parser("worker", help="run a queue worker (needs REDIS_URL)")
    worker.add_argument("--queues", default=f"{QUEUE_INFERENCE},{QUEUE_BATCH},{QUEUE_TRAINING}",
                        help="comma-separated queues in priority order (default inference,batch,training: "
                             "all of them, clicks first)")
    worker.add_argument("--burst", action="store_true", help="quit when the queues are empty")
    worker.add_argument("--name", help="worker name (default: RQ's random name)")
    worker.set_defaults(func=_worker)

    for name in COMMAND_MODULES:
        module_name = f"{__package__}.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            logger.debug("command module not installed", extra={"module": module_name})
            continue
        module.register_cli(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; returns its exit code."""
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BackendError as exc:
        logger.error("command failed", extra={"command": args.command, "detail": exc.detail})
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
