"""Annotation webhook payloads → records: regions, image field, bulk events, malformed bodies, deletions."""
from __future__ import annotations

import copy

import pytest

from backend.labelstudio.annotations import deleted_annotation_ids, parse_annotation_events
from tests.support.regions import keypoint

CONFIG = "<View><Image name=\"image\" value=\"$image\"/><BrushLabels name=\"tag\" toName=\"image\"/></View>"


def test_captured_annotation_created_becomes_a_record_with_the_brush_region(capture) -> None:
    payload = capture("webhook_annotation_created")
    payload.pop("action")
    [rec] = parse_annotation_events("ANNOTATION_CREATED", payload)
    assert (rec.project, rec.annotation_id, rec.task_id) == ("1", 1, 1)
    assert rec.image_url == "/data/upload/1/a6b80a50-disc.png"
    assert rec.has_masks and [r["type"] for r in rec.regions] == ["brushlabels"]


def test_annotation_without_mask_or_cancelled_has_no_regions(capture) -> None:
    payload = capture("webhook_annotation_updated")
    payload["annotation"]["result"] = [keypoint(5, 5, 320, 240)]
    assert not parse_annotation_events("ANNOTATION_UPDATED", payload)[0].has_masks
    payload = capture("webhook_annotation_updated")
    payload["annotation"]["was_cancelled"] = True
    assert parse_annotation_events("ANNOTATION_UPDATED", payload)[0].regions == ()


def test_image_field_comes_from_the_label_config(capture) -> None:
    payload = capture("webhook_annotation_created")
    payload["project"]["label_config"] = CONFIG.replace("$image", "$photo")
    payload["task"]["data"] = {"photo": "/data/upload/1/p.png", "image": "/wrong.png"}
    assert parse_annotation_events("ANNOTATION_CREATED", payload)[0].image_url == "/data/upload/1/p.png"


def test_bulk_annotations_created_pairs_annotations_with_their_tasks(capture) -> None:
    one = capture("webhook_annotation_created")
    two = copy.deepcopy(one["annotation"])
    two.update(id=2, task=5)
    payload = {"project": one["project"], "annotation": [one["annotation"], two],
               "task": [one["task"], {"id": 5, "data": {"image": "/data/upload/1/five.png"}}]}
    records = parse_annotation_events("ANNOTATIONS_CREATED", payload)
    assert [(r.annotation_id, r.image_url) for r in records] == [
        (1, "/data/upload/1/a6b80a50-disc.png"), (2, "/data/upload/1/five.png")]


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p.pop("annotation"), "lacks the annotation"),
    (lambda p: p.pop("project"), "lacks the project"),
    (lambda p: p["project"].update(id="../etc"), "invalid project id"),
    (lambda p: p["annotation"].update(id="x1"), "annotation.id"),
    (lambda p: p["task"].update(data={"a": "1", "b": "2"}, id=1) or p["project"].pop("label_config"),
     "which task data field"),
])
def test_malformed_annotation_payloads_raise_value_errors(capture, mutate, message) -> None:
    payload = capture("webhook_annotation_created")
    mutate(payload)
    with pytest.raises(ValueError, match=message):
        parse_annotation_events("ANNOTATION_CREATED", payload)


def test_deleted_annotation_ids_from_both_delete_events(capture) -> None:
    project = capture("webhook_start_training")["project"]
    assert deleted_annotation_ids("ANNOTATIONS_DELETED", {"annotations": [{"id": 4}, {"id": 9}], "project": project}) \
        == ("1", [4, 9])
    assert deleted_annotation_ids("ANNOTATION_DELETED", {"annotation": {"id": 4}, "project": project}) == ("1", [4])
    with pytest.raises(ValueError, match="deleted annotations"):
        deleted_annotation_ids("ANNOTATIONS_DELETED", {"project": project})
