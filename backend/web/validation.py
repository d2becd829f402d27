"""Request bodies checked once, where they enter: the right JSON types or a 400 naming the field.

The routes of :mod:`backend.web.app` turn a raw body into these small typed records; the code behind
them relies on the types and never meets a string where an object belongs. Region contents are
checked where they are read (:mod:`backend.labelstudio.regions`, :mod:`backend.labelstudio.annotations`),
each with a 400.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..common.errors import BadRequest


def json_object(raw: bytes) -> dict:
    """The body as a JSON object; 400 for invalid, non-object or absurdly nested JSON."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise BadRequest("the request body is nested too deeply") from None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def optional_text(body: dict, key: str) -> str | None:
    """``body[key]`` when it is a string, ``None`` when absent or null; else 400."""
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"'{key}' must be a string, got {type(value).__name__}")
    return value


def project_ref(body: dict) -> str | None:
    """The ``project`` field as text (Label Studio sends ``"<id>.<timestamp>"`` or an id); else 400."""
    value = body.get("project")
    if value is None:
        return None
    if isinstance(value, str) or _is_int(value):
        return str(value)
    raise BadRequest(f"'project' must be a string or an integer id, got {type(value).__name__}")


def task_list(value: Any) -> list[dict]:
    """``tasks``: a list of task objects, each with an integer (or absent) ``id`` and an object ``data``."""
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise BadRequest("'tasks' must be a list of task objects")
    for i, task in enumerate(value):
        if task.get("id") is not None and not _is_int(task["id"]):
            raise BadRequest(f"tasks[{i}].id must be an integer, got {type(task['id']).__name__}")
        if not isinstance(task.get("data", {}), dict):
            raise BadRequest(f"tasks[{i}].data must be an object")
    return value


@dataclass(frozen=True)
class PredictRequest:
    """A ``/predict`` body: tasks, the interactive context (``None`` without), project, config."""

    tasks: list[dict]
    context: dict | None
    project: str | None
    label_config: str | None


def predict_request(body: dict) -> PredictRequest:
    """Check a ``/predict`` body (shapes in the Label Studio protocol reference)."""
    if "tasks" not in body:
        raise BadRequest("missing field 'tasks'")
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise BadRequest("'params' must be an object")
    context = params.get("context")
    if context is not None and not isinstance(context, dict):
        raise BadRequest(f"params.context must be an object or null, got {type(context).__name__}")
    return PredictRequest(task_list(body["tasks"]), context, project_ref(body), optional_text(body, "label_config"))


@dataclass(frozen=True)
class SetupRequest:
    """A ``/setup`` body: project, Label Studio hostname and token (each may be absent)."""

    project: str | None
    hostname: str | None
    access_token: str | None


def setup_request(body: dict) -> SetupRequest:
    """Check a ``/setup`` body."""
    hostname = optional_text(body, "hostname")
    if hostname and not hostname.startswith(("http://", "https://")):
        raise BadRequest("'hostname' must be an http:// or https:// URL")
    return SetupRequest(project_ref(body), hostname or None, optional_text(body, "access_token") or None)
