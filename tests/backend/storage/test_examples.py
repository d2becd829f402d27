"""The example store: atomic entries of an annotation's image and masks, readable as samples."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.labelstudio.masks import Instance
from backend.storage import examples as ex
from backend.storage.examples import ExampleStore
from fcanet_core import Click
from tests.support.regions import load_horse, record


@pytest.fixture(scope="module")
def horse(shared_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return load_horse(shared_dir)


def test_put_stores_image_masks_and_clicks_readable_as_samples(tmp_path: Path, horse) -> None:
    image, mask = horse
    store = ExampleStore(tmp_path)
    inst = Instance("r1", "Object", mask, (Click(3.5, 4.0, True),))
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
    [old] = store.put(record(), image, [Instance("r1", "Object", mask)])
    smaller = mask.copy()
    smaller[: mask.shape[0] // 2] = 0
    [new] = store.put(record(updated_at="2026-01-02T00:00:00Z"), image, [Instance("r1", "Object", smaller)])
    assert new.revision != old.revision
    np.testing.assert_array_equal(new.sample().gt, smaller)
    assert [p.name for p in (tmp_path / "7").iterdir() if p.is_dir()] == ["3"]


def test_an_older_update_arriving_late_is_ignored(tmp_path: Path, horse) -> None:
    image, mask = horse
    store = ExampleStore(tmp_path)
    [newer] = store.put(record(updated_at="2026-01-02T00:00:00Z"), image, [Instance("r1", "Object", mask)])
    store.put(record(updated_at="2026-01-01T00:00:00Z"), image, [Instance("r1", "Object", 1 - mask)])
    assert store.examples("7") == [newer]


def test_delete_and_put_without_instances_remove_the_entry(tmp_path: Path, horse) -> None:
    image, mask = horse
    store = ExampleStore(tmp_path)
    store.put(record(annotation_id=1), image, [Instance("r", "Object", mask)])
    store.put(record(annotation_id=2), image, [Instance("r", "Object", mask)])
    assert store.delete("7", [1, 99]) == 1
    assert [e.annotation_id for e in store.examples("7")] == [2]
    assert store.put(record(annotation_id=2), image, []) == []
    assert store.examples("7") == []


def test_a_write_that_fails_midway_leaves_the_old_entry_whole(tmp_path: Path, horse, monkeypatch) -> None:
    image, mask = horse
    store = ExampleStore(tmp_path)
    [old] = store.put(record(), image, [Instance("r1", "Object", mask)])
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
                  [Instance("a", "Object", 1 - mask), Instance("b", "Object", mask)])
    assert store.examples("7") == [old]
    np.testing.assert_array_equal(old.sample().gt, mask)
    assert sorted(p.name for p in (tmp_path / "7").iterdir() if p.is_dir()) == ["3"]


def test_store_refuses_masks_that_do_not_fit_the_image(tmp_path: Path, horse) -> None:
    image, mask = horse
    with pytest.raises(ValueError, match="mask of region"):
        ExampleStore(tmp_path).put(record(), image, [Instance("r", "Object", mask[1:])])


def test_saved_image_is_lossless(tmp_path: Path, horse) -> None:
    image, mask = horse
    [example] = ExampleStore(tmp_path).put(record(), image, [Instance("r", "Object", mask)])
    np.testing.assert_array_equal(np.asarray(Image.open(example.image_path)), image)
