"""The webhook spool: events on disk, oldest first, until done; rejected ones kept aside; a full disk refused."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from backend.storage.spool import REJECTED_DIR, StorageFull, WebhookSpool


def test_events_are_kept_in_order_read_back_and_removed(tmp_path: Path) -> None:
    spool = WebhookSpool(tmp_path / "spool")
    assert spool.pending() == []  # no folder yet
    first = spool.put("ANNOTATION_CREATED", {"task": {"id": 1}})
    second = spool.put("START_TRAINING", {"project": {"id": 2}})
    assert spool.pending() == [first, second]
    assert spool.read(first) == ("ANNOTATION_CREATED", {"task": {"id": 1}})
    assert (tmp_path / "spool" / f"{first}.json").stat().st_mode & 0o777 == 0o600
    assert 0 <= WebhookSpool.age_s(first) < 60
    spool.remove(first)
    spool.remove(first)  # removing twice is harmless
    assert spool.pending() == [second] and spool.read(first) is None


def test_a_rejected_event_leaves_the_queue_but_stays_on_disk(tmp_path: Path, caplog) -> None:
    spool = WebhookSpool(tmp_path)
    name = spool.put("ANNOTATION_UPDATED", {"task": {"id": 5}})
    with caplog.at_level(logging.ERROR):
        spool.reject(name, "the image is gone (404)")
    assert spool.pending() == [] and (tmp_path / REJECTED_DIR / f"{name}.json").is_file()
    assert "webhook event rejected" in caplog.text


def test_age_comes_from_the_name() -> None:
    name = f"{time.time_ns() - 5 * 10**9:020d}-abcdef12"
    assert WebhookSpool.age_s(name) == pytest.approx(5, abs=1)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_spool_refuses_with_507_and_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    root.mkdir()
    root.chmod(0o500)
    try:
        with pytest.raises(StorageFull, match="was not accepted") as caught:
            WebhookSpool(root).put("ANNOTATION_CREATED", {})
        assert caught.value.status == 507 and list(root.iterdir()) == []
    finally:
        root.chmod(0o700)


def test_a_spool_that_is_a_file_refuses_with_507(tmp_path: Path) -> None:
    blocker = tmp_path / "spool"
    blocker.write_text("not a folder")
    with pytest.raises(StorageFull, match="free space under MODEL_DIR"):
        WebhookSpool(blocker).put("ANNOTATION_CREATED", {"task": {"id": 1}})
