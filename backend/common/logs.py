"""Structured logging for the backend's processes: one JSON object per line (or plain text).

Library modules log through ``logging.getLogger(__name__)`` and pass context as ``extra={...}``
(``task_id``, ``job_id``, ``model_version``, ``duration_ms`` ...); the JSON formatter writes those
fields next to ``ts``, ``level``, ``logger`` and ``msg``. Entry points (``python -m backend ...``,
``backend._wsgi``) call :func:`configure_logging` once.
"""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record as a JSON line with its ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` for humans."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in vars(record).items()
                          if k not in _STANDARD and not k.startswith("_"))
        text = super().format(record)
        return f"{text} {extras}" if extras else text


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Send all logs to stderr in ``fmt`` (``json`` or ``text``) at ``level``; replaces earlier setup."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
