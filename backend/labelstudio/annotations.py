"""Label Studio annotation webhooks → :class:`AnnotationRecord`: ids, the image reference, the regions.

Parsing is cheap and runs in the web request (:func:`parse_annotation_events`,
:func:`deleted_annotation_ids`); decoding the masks (:mod:`backend.labelstudio.masks`) and storing them
(:mod:`backend.storage.examples`) run in a job. Malformed payloads raise ``ValueError``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .prompts import LabelConfig
from .regions import MASK_TYPES, PromptError

#: Keypoint results kept beside the masks: the prompts that produced them.
CLICK_TYPE = "keypointlabels"
_PROJECT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Largest id Label Studio gives (a 64-bit database key); longer ones would not fit a file name.
MAX_ID = 2**63 - 1


@dataclass(frozen=True)
class AnnotationRecord:
    """What a job needs from an annotation webhook: ids, the image reference and the mask regions.

    ``regions`` keeps the brush/polygon results and the keypoint results (our prompts) only.
    """

    project: str
    annotation_id: int
    task_id: int | None
    image_url: str
    updated_at: str
    regions: tuple[dict, ...] = field(default=())

    @property
    def has_masks(self) -> bool:
        """True when at least one brush or polygon region is present."""
        return any(r.get("type") in MASK_TYPES for r in self.regions)


def project_key(value: Any) -> str:
    """A project id as a safe folder name; raises ``ValueError`` for anything else."""
    raw = value.get("id") if isinstance(value, dict) else value
    key = str(raw)
    if isinstance(raw, bool) or not isinstance(raw, (int, str)) or not _PROJECT_RE.match(key):
        raise ValueError(f"invalid project id {value!r}")
    return key


def _int_id(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isascii() \
            or not str(value).isdigit():
        raise ValueError(f"{what} must be a non-negative integer id, got {value!r}")
    if len(str(value)) > len(str(MAX_ID)) or int(value) > MAX_ID:
        raise ValueError(f"{what} must be at most {MAX_ID} (a Label Studio id), got {str(value)[:40]}...")
    return int(value)


def image_data_key(label_config: str | None, to_name: str, task_data: dict) -> str:
    """The ``task.data`` key holding the image ``to_name``: the label config's ``$key`` for that
    Image tag, else a field named ``to_name``, else the only field."""
    if label_config:
        try:
            field_name = LabelConfig(label_config).data_field(to_name)
        except PromptError as exc:
            raise ValueError(f"project label_config: {exc.detail}") from None
        if field_name is not None:
            return field_name
    if to_name in task_data:
        return to_name
    if len(task_data) == 1:
        return next(iter(task_data))
    raise ValueError(f"cannot tell which task data field holds the image {to_name!r}: {sorted(task_data)}")


def _record(project: str, annotation: dict, task: dict, label_config: str | None) -> AnnotationRecord:
    if not isinstance(annotation, dict) or not isinstance(task, dict):
        raise ValueError("annotation and task must be JSON objects")
    results = annotation.get("result") or []
    if not isinstance(results, list):
        raise ValueError("annotation.result must be a list")
    regions = tuple(r for r in results if isinstance(r, dict) and r.get("type") in (*MASK_TYPES, CLICK_TYPE))
    for region in regions:
        if not isinstance(region.get("value", {}), dict):
            raise ValueError(f"region {region.get('id')!r}: value must be an object")
    image_url = ""
    masks = [r for r in regions if r.get("type") in MASK_TYPES]
    if masks and not annotation.get("was_cancelled"):
        data = task.get("data")
        if not isinstance(data, dict):
            raise ValueError("task.data must be a JSON object")
        image_url = data.get(image_data_key(label_config, str(masks[0].get("to_name", "")), data))
        if not isinstance(image_url, str) or not image_url:
            raise ValueError("the task has no image URL for the annotated image")
    else:
        regions = ()
    return AnnotationRecord(
        project=project,
        annotation_id=_int_id(annotation.get("id"), "annotation.id"),
        task_id=_int_id(task["id"], "task.id") if task.get("id") is not None else None,
        image_url=image_url,
        updated_at=str(annotation.get("updated_at") or ""),
        regions=regions,
    )


def parse_annotation_events(action: str, payload: dict) -> list[AnnotationRecord]:
    """Records from an ``ANNOTATION_CREATED``/``ANNOTATION_UPDATED`` (one) or ``ANNOTATIONS_CREATED``
    (several) payload. Cancelled (skipped) annotations come back without regions."""
    if not isinstance(payload, dict):
        raise ValueError("webhook payload must be a JSON object")
    project = payload.get("project")
    if not isinstance(project, dict):
        raise ValueError(f"{action} payload lacks the project object")
    key = project_key(project)
    config = project.get("label_config") if isinstance(project.get("label_config"), str) else None
    annotations, tasks = payload.get("annotation"), payload.get("task")
    if action == "ANNOTATIONS_CREATED":
        annotations = annotations if isinstance(annotations, list) else []
        by_id = {t.get("id"): t for t in (tasks if isinstance(tasks, list) else []) if isinstance(t, dict)}
        return [_record(key, a, by_id.get(a.get("task"), {}), config) for a in annotations]
    if not isinstance(annotations, dict):
        raise ValueError(f"{action} payload lacks the annotation object")
    return [_record(key, annotations, tasks if isinstance(tasks, dict) else {}, config)]


def deleted_annotation_ids(action: str, payload: dict) -> tuple[str, list[int]]:
    """``(project, annotation ids)`` of an ``ANNOTATION_DELETED`` or ``ANNOTATIONS_DELETED`` payload."""
    if not isinstance(payload, dict) or not isinstance(payload.get("project"), dict):
        raise ValueError(f"{action} payload lacks the project object")
    items = payload.get("annotations") if action == "ANNOTATIONS_DELETED" else [payload.get("annotation")]
    if not isinstance(items, list):
        raise ValueError(f"{action} payload lacks the deleted annotations")
    ids = [_int_id(item.get("id") if isinstance(item, dict) else item, "annotation id") for item in items]
    return project_key(payload["project"]), ids


def is_project_key(name: str) -> bool:
    """Whether ``name`` is a project key (:func:`project_key`'s form)."""
    return bool(_PROJECT_RE.match(name))
