"""Deadlines: time left, and a blocking call the caller gives up on when its time is out."""
from __future__ import annotations

import threading
import time

import pytest

from backend.common.deadline import Deadline, call_within


def test_deadline_counts_down_to_zero() -> None:
    deadline = Deadline(0.05)
    assert not deadline.passed and 0 < deadline.remaining() <= 0.05
    time.sleep(0.06)
    assert deadline.passed and deadline.remaining() == 0.0


def test_call_within_returns_the_result_or_raises_the_error_of_the_call() -> None:
    assert call_within(5, lambda: "mask", lambda: TimeoutError("late")) == "mask"
    with pytest.raises(KeyError):
        call_within(5, lambda: {}["missing"], lambda: TimeoutError("late"))


def test_call_within_gives_up_on_time_and_leaves_the_call_running() -> None:
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="late"):
        call_within(0.1, lambda: release.wait(5), lambda: TimeoutError("late"), name="slow-host")
    assert time.monotonic() - started < 2
    assert any(t.name == "slow-host" and t.daemon for t in threading.enumerate())
    release.set()
