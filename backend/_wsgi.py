"""WSGI entry point for gunicorn: ``gunicorn --workers 1 --threads 8 backend._wsgi:app``.

Settings come from the environment (:mod:`backend.config`). Do not use ``--preload`` with a GPU:
CUDA cannot be used in a process forked after it was initialised.
"""
from __future__ import annotations

from .common.logs import configure_logging
from .config import Settings
from .web.app import create_app

settings = Settings.from_env()
configure_logging(settings.log_level, settings.log_format)
app = create_app(settings)
