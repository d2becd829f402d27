"""One computation per key at a time: callers asking for a key being computed wait for that result.

The image fetcher uses it so that a click's download and the worker's prefetch of the same image
(:mod:`backend.inference.prefetch`) share one download instead of racing two.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Callable, Generic, Hashable, TypeVar

V = TypeVar("V")


class SingleFlight(Generic[V]):
    """Runs ``compute`` once per key among concurrent callers; the others get its result or error."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[Hashable, Future] = {}

    def run(self, key: Hashable, compute: Callable[[], V]) -> V:
        """``compute()``, or the outcome of the call already running for ``key``."""
        with self._lock:
            future = self._running.get(key)
            owner = future is None
            if owner:
                future = self._running[key] = Future()
        if not owner:
            return future.result()
        try:
            value = compute()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(value)
            return value
        finally:
            with self._lock:
                del self._running[key]
