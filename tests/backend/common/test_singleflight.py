"""One computation per key: concurrent callers of a running key share its result or error."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from backend.common.singleflight import SingleFlight


def test_concurrent_callers_share_one_computation() -> None:
    flight: SingleFlight[int] = SingleFlight()
    started, release = threading.Event(), threading.Event()
    calls = []

    def compute() -> int:
        calls.append(1)
        started.set()
        release.wait(5)
        return 42

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(flight.run, "img", compute)
        assert started.wait(5)
        others = [pool.submit(flight.run, "img", compute) for _ in range(3)]
        release.set()
        assert first.result(5) == 42 and [f.result(5) for f in others] == [42, 42, 42]
    assert len(calls) == 1
    assert flight.run("img", lambda: 7) == 7  # a finished key computes again


def test_an_error_reaches_the_waiting_callers_and_the_key_is_freed() -> None:
    flight: SingleFlight[int] = SingleFlight()
    started, release = threading.Event(), threading.Event()

    def fail() -> int:
        started.set()
        release.wait(5)
        raise OSError("host down")

    with ThreadPoolExecutor(2) as pool:
        owner = pool.submit(flight.run, "k", fail)
        assert started.wait(5)
        waiter = pool.submit(flight.run, "k", lambda: 1)
        release.set()
        for future in (owner, waiter):
            with pytest.raises(OSError, match="host down"):
                future.result(5)
    assert flight.run("k", lambda: 3) == 3
