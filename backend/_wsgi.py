"""WSGI entry point for gunicorn, which ``python -m backend serve`` runs with the serving defaults
(``WORKERS``, ``THREADS``, ``PORT`` in :mod:`backend.config`); by hand: ``gunicorn --workers 1
--threads 32 backend._wsgi:app`` (``--threads`` as ``THREADS``).

Settings come from the environment (:mod:`backend.config`). Do not use ``--preload`` with a GPU:
CUDA cannot be used in a process forked after it was initialised.
"""
from __future__ import annotations

from .common.logs import configure_logging
from .config import get_settings
from .web.app import create_app

settings = get_settings()
configure_logging(settings.log_level, settings.log_format)
app = create_app(settings)
