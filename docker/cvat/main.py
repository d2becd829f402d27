"""Nuclio function of the FCA-Net interactor for CVAT (``handler: main:handler``).

The function image is the project's own image (``fcanet-backend:cpu`` or ``:cuda``, with the
bundled model); ``PYTHONPATH=/app`` makes ``backend`` importable. Settings are the backend's
environment variables: with ``REDIS_URL`` the clicks go to the ``inference`` queue served by the
Label Studio backend's workers, without it the model runs in this function.
"""
from __future__ import annotations

from typing import Any

from backend.common.logs import configure_logging
from backend.config import get_settings
from backend.cvat.interactor import CvatInteractor


def init_context(context: Any) -> None:
    """Once per function worker: read the settings, load the model (or connect to the queue)."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    context.user_data.interactor = CvatInteractor(settings)


def handler(context: Any, event: Any) -> Any:
    """One CVAT interaction: ``{"mask": H×W 0/255}``, or a JSON error with a 4xx/5xx status."""
    status, body = context.user_data.interactor.answer(event.body)
    return context.Response(body=body, headers={}, content_type="application/json", status_code=status)
