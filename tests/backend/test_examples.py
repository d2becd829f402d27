"""The example store: webhook payloads → records, Label Studio masks → 0/1 masks, atomic entries."""
from __future__ import annotations

import copy
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from label_studio_sdk.converter.brush import mask2rle
from PIL import Image

from backend import examples as ex
from backend.examples import ExampleStore, decode_regions, deleted_annotation_ids, parse_annotation_events
from fcanet_core import Click
from fcanet_core.datasets import load_samples

CONFIG = "<View><Image name=\"image\" value=\"$image\"/><BrushLabels name=\"tag\" toName=\"image\"/></View>"


@pytest.fixture(scope="module")
def horse(shared_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """A real image and its object mask (0/1), from the shared horse set."""
    sample = load_samples(shared_dir / "data" / "train" / "horses", limit=1)[0]
    image, gt = sample.load()
    return image, (gt == 1).astype(np.uint8)


def brush_region(mask: np.ndarray, label: str = "Object", region_id: str = "r1") -> dict:
    height, width = mask.shape
    return {"id": region_id, "from_name": "tag", "to_name": "image", "type": "brushlabels",
            "original_width": width, "original_height": height, "image_rotation": 0,
            "value": {"format": "rle", "rle": mask2rle(mask.astype(np.uint8) * 255), "brushlabels": [label]}}


def keypoint(x: float, y: float, width: int, height: int, positive: bool | None = True, label: str = "Object") -> dict:
    region = {"id": f"k{x}-{y}", "from_name": "tag2", "to_name": "image", "type": "keypointlabels",
              "original_width": width, "original_height": height,
              "value": {"x": 100.0 * x / width, "y": 100.0 * y / height, "keypointlabels": [label]}}
    if positive is not None:
        region["is_positive"] = positive
    return region


def record(project: str = "7", annotation_id: int = 3, regions: tuple = (), updated_at: str = "2026-01-01T00:00:00Z"):
    return ex.AnnotationRecord(project, annotation_id, 11, "/data/upload/7/x.png", updated_at, tuple(regions))


# ------------------------------------------------------------------------------- payload parsing

def test_captured_annotation_created_becomes_a_record_with_the_brush_region(capture) -> None:
    payload = capture("webhook_annotation_created")
    payload.pop("action")
    [rec] = parse_annotation_events("ANNOTATION_CREATED", payload)
    assert (rec.project, rec.annotation_id, rec.task_id) == ("1", 1, 1)
    assert rec.image_url == "/data/upload/1/a6b80a50-disc.png"
    assert rec.has_masks and [r["type"] for r in rec.regions] == ["brushlabels"]


def test_captured_brush_rle_decodes_to_the_disc_at_the_original_size(capture) -> None:
    region = capture("webhook_annotation_created")["annotation"]["result"][0]
    [inst] = decode_regions([region], 240, 320)
    assert inst.mask.shape == (240, 320) and set(np.unique(inst.mask)) == {0, 1}
    ys, xs = np.nonzero(inst.mask)
    assert inst.mask[int(ys.mean()), int(xs.mean())] == 1
    assert inst.mask[0, 0] == inst.mask[-1, -1] == 0
    assert inst.label == "Object"


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


# ------------------------------------------------------------------------------- mask decoding

def test_real_mask_survives_the_brush_round_trip(horse) -> None:
    _, mask = horse
    [inst] = decode_regions([brush_region(mask)], *mask.shape)
    np.testing.assert_array_equal(inst.mask, mask)


def test_polygon_region_is_filled_in_pixels() -> None:
    region = {"id": "p", "type": "polygonlabels", "original_width": 200, "original_height": 100,
              "value": {"points": [[10, 10], [60, 10], [60, 90], [10, 90]], "polygonlabels": ["Object"]}}
    [inst] = decode_regions([region], 100, 200)
    ys, xs = np.nonzero(inst.mask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (20, 120, 10, 90)


def test_keypoints_of_the_same_label_become_the_instance_clicks(horse) -> None:
    _, mask = horse
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    inside = (int(xs[len(xs) // 2]), int(ys[len(ys) // 2]))
    outside = next((x, y) for y in range(height) for x in range(width) if not mask[y, x])
    regions = [keypoint(*outside, width, height, positive=False), keypoint(*inside, width, height, positive=None),
               keypoint(*inside, width, height, label="Other"), brush_region(mask)]
    [inst] = decode_regions(regions, height, width)
    assert [c.positive for c in inst.clicks] == [False, True]
    assert inst.clicks[1].x == pytest.approx(inside[0]) and inst.clicks[1].y == pytest.approx(inside[1])


def test_region_for_another_image_size_or_without_rle_is_refused(horse) -> None:
    _, mask = horse
    with pytest.raises(ValueError, match="image is"):
        decode_regions([brush_region(mask)], mask.shape[0] + 1, mask.shape[1])
    broken = brush_region(mask)
    broken["value"]["rle"] = None
    with pytest.raises(ValueError, match="no RLE"):
        decode_regions([broken], *mask.shape)


def test_an_rle_declaring_more_values_than_the_image_is_refused_before_decoding(horse) -> None:
    _, mask = horse
    region = brush_region(mask)
    rle = region["value"]["rle"]
    region["value"]["rle"] = list((100_000_000).to_bytes(4, "big")) + rle[4:]   # 100 M values, 400 MB
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="declares 100000000 values"):
            decode_regions([region], *mask.shape)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024
    region["value"]["rle"] = rle[:-40]
    with pytest.raises(ValueError, match="truncated RLE"):
        decode_regions([region], *mask.shape)
    region["value"]["rle"] = ["a", 1, 2, 3, 4]
    with pytest.raises(ValueError, match="byte values"):
        decode_regions([region], *mask.shape)


def test_empty_mask_is_skipped() -> None:
    assert decode_regions([brush_region(np.zeros((20, 30), np.uint8))], 20, 30) == []


# ------------------------------------------------------------------------------- the store

def test_put_stores_image_masks_and_clicks_readable_as_samples(tmp_path: Path, horse) -> None:
    image, mask = horse
    store = ExampleStore(tmp_path)
    inst = ex.Instance("r1", "Object", mask, (Click(3.5, 4.0, True),))
    [example] = store.put(record(), image, [inst])
    assert example.key == "3-0" and example.clicks == (Click(3, 4, True),)
    assert store.projects() == ["7"] and store.examples("7") == [example]
    sample_image, gt = example.sample().load()
    np.testing.assert_array_equal(sample_image, image)
    np.testing.assert_array_equal(gt, mask)
    entry = json.loads((tmp_path / "7" / "3" / ex.ENTRY_FILE).read_text())
    assert entry["image_url"] == "/data/upload/7/x.png" and entry["instances"][0]["label"] == "Object"


def test_update_replaces_the_entry_and_changes_its_revision(tmp_path: Path, horse) -> None:
    image, mask = horse
    store = ExampleStore(tmp_path)
    [old] = store.put(record(), image, [ex.Instance("r1", "Object", mask)])
    smaller = mask.copy()
    smaller[: mask.shape[0] // 2] = 0
    [new] = store.put(record(updated_at="2026-01-02T00:00:00Z"), image, [ex.Instance("r1", "Object", smaller)])
    assert new.revision != old.revision
    np.testing.assert_array_equal(new.sample().gt, smaller)
    assert [p.name for p in (tmp_path / "7").iterdir() if p.is_dir()] == ["3"]


def test_an_older_update_arriving_late_is_ignored(tmp_path: Path, horse) -> None:
    image, mask = horse
    store = ExampleStore(tmp_path)
    [newer] = store.put(record(updated_at="2026-01-02T00:00:00Z"), image, [ex.Instance("r1", "Object", mask)])
    store.put(record(updated_at="2026-01-01T00:00:00Z"), image, [ex.Instance("r1", "Object", 1 - mask)])
    assert store.examples("7") == [newer]


def test_delete_and_put_without_instances_remove_the_entry(tmp_path: Path, horse) -> None:
    image, mask = horse
    store = ExampleStore(tmp_path)
    store.put(record(annotation_id=1), image, [ex.Instance("r", "Object", mask)])
    store.put(record(annotation_id=2), image, [ex.Instance("r", "Object", mask)])
    assert store.delete("7", [1, 99]) == 1
    assert [e.annotation_id for e in store.examples("7")] == [2]
    assert store.put(record(annotation_id=2), image, []) == []
    assert store.examples("7") == []


def test_a_write_that_fails_midway_leaves_the_old_entry_whole(tmp_path: Path, horse, monkeypatch) -> None:
    image, mask = horse
    store = ExampleStore(tmp_path)
    [old] = store.put(record(), image, [ex.Instance("r1", "Object", mask)])
    real_write = ex._write_png
    calls = []

    def failing(path: Path, array: np.ndarray) -> None:
        calls.append(path)
        if len(calls) == 3:  # image and first mask written, the second mask fails
            raise OSError("disk full")
        real_write(path, array)

    monkeypatch.setattr(ex, "_write_png", failing)
    with pytest.raises(OSError, match="disk full"):
        store.put(record(updated_at="2026-02-01T00:00:00Z"), image,
                  [ex.Instance("a", "Object", 1 - mask), ex.Instance("b", "Object", mask)])
    assert store.examples("7") == [old]
    np.testing.assert_array_equal(old.sample().gt, mask)
    assert sorted(p.name for p in (tmp_path / "7").iterdir() if p.is_dir()) == ["3"]


def test_store_refuses_masks_that_do_not_fit_the_image(tmp_path: Path, horse) -> None:
    image, mask = horse
    with pytest.raises(ValueError, match="mask of region"):
        ExampleStore(tmp_path).put(record(), image, [ex.Instance("r", "Object", mask[1:])])


def test_saved_image_is_lossless(tmp_path: Path, horse) -> None:
    image, mask = horse
    [example] = ExampleStore(tmp_path).put(record(), image, [ex.Instance("r", "Object", mask)])
    np.testing.assert_array_equal(np.asarray(Image.open(example.image_path)), image)
