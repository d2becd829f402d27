"""Which tasks of a project auto-annotation works on: listing them, ``--filter``, and done tasks."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from ..config import parse_bool
from .client import LabelStudioClient

#: Task fields fetched when listing a project.
LIST_FIELDS = "id,data,total_annotations,predictions_model_versions,predictions"
PAGE_SIZE = 100


@dataclass(frozen=True)
class TaskFilter:
    """Which tasks to consider (``--filter`` of :mod:`backend.autoannotate.annotate`)."""

    ids: frozenset[int] | None = None
    annotated: bool | None = None
    data: tuple[tuple[str, re.Pattern], ...] = ()

    @classmethod
    def parse(cls, expressions: Sequence[str]) -> "TaskFilter":
        """Parse ``--filter`` expressions; ``ValueError`` with the accepted forms for a bad one."""
        ids: set[int] | None = None
        annotated, data = None, []
        for expr in expressions:
            try:
                if expr.startswith("id="):
                    ids = (ids or set()) | _id_set(expr[3:])
                elif expr.startswith("annotated="):
                    annotated = parse_bool(expr[len("annotated="):])
                elif "~" in expr and expr.split("~", 1)[0]:
                    key, pattern = expr.split("~", 1)
                    data.append((key, re.compile(pattern)))
                else:
                    raise ValueError("unknown form")
            except (ValueError, re.error) as exc:
                raise ValueError(f"bad --filter {expr!r} ({exc}); use id=1,5,10-20, annotated=yes|no "
                                 "or FIELD~REGEX") from None
        return cls(None if ids is None else frozenset(ids), annotated, tuple(data))

    def matches(self, task: dict) -> bool:
        """Whether a listed task passes every condition."""
        if self.ids is not None and task.get("id") not in self.ids:
            return False
        if self.annotated is not None and (int(task.get("total_annotations") or 0) > 0) != self.annotated:
            return False
        values = task.get("data") or {}
        return all(key in values and pattern.search(str(values[key])) for key, pattern in self.data)


def _id_set(text: str) -> set[int]:
    """``1,5,10-20`` → the ids it names."""
    ids: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, _, high = part.partition("-")
        ids.update(range(int(low), int(high or low) + 1))
    if not ids:
        raise ValueError("no ids")
    return ids


def list_tasks(client: LabelStudioClient, project_id: int) -> list[dict]:
    """Every task of the project (id, data, annotation count, prediction versions)."""
    tasks: list[dict] = []
    page = 1
    while True:
        body = client.api("GET", "/api/tasks", params={"project": project_id, "page": page, "page_size": PAGE_SIZE,
                                                       "fields": "all", "include": LIST_FIELDS})
        tasks.extend(body["tasks"])
        if not body["tasks"] or len(tasks) >= int(body["total"]):
            return tasks
        page += 1


def has_version(task: dict, version: str) -> bool:
    """Whether a task has a non-empty prediction of ``version`` (from its ``predictions``; a listing
    without them: ``predictions_model_versions``)."""
    predictions = task.get("predictions")
    if isinstance(predictions, list):
        return any(isinstance(p, dict) and p.get("model_version") == version and p.get("result")
                   for p in predictions)
    return version in {v.strip() for v in str(task.get("predictions_model_versions") or "").split(",")}
