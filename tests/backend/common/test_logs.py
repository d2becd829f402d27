"""Structured logs: one JSON object per line with the record's extra fields."""
from __future__ import annotations

import json
import logging

from backend.common.logs import JsonFormatter


def test_json_log_lines_carry_the_extra_fields():
    record = logging.LogRecord("backend.x", logging.INFO, __file__, 1, "segmented %s", ("ok",), None)
    record.task_id, record.duration_ms = 7, 12.5
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "segmented ok" and line["level"] == "info" and line["logger"] == "backend.x"
    assert line["task_id"] == 7 and line["duration_ms"] == 12.5
