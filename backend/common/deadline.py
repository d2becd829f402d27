"""Run a blocking call with a deadline: the caller gets its result, or gives up when time is out.

Used where a source the backend does not control decides how long a call takes (an image host
that sends one byte a second, a stuck in-process click): the call runs in a daemon thread of its
own and the caller waits at most ``seconds``. The abandoned call is not killed; it must bound
itself (the image download checks its deadline between reads) or watch the ``stop`` event the
caller sets when it gives up (a prediction checks it between its stages), so it ends soon after.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, TypeVar

T = TypeVar("T")


class Deadline:
    """A point in time ``seconds`` from now (monotonic clock)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left (0.0 once passed)."""
        return max(0.0, self.end - time.monotonic())

    @property
    def passed(self) -> bool:
        """True once the deadline is reached."""
        return time.monotonic() >= self.end


def call_within(seconds: float, func: Callable[[], T], on_timeout: Callable[[], Exception],
                name: str = "deadline-call", stop: threading.Event | None = None) -> T:
    """``func()``'s result or exception, or ``on_timeout()`` raised after ``seconds``.

    Args:
        seconds: how long the caller waits.
        func: the call; it runs in a daemon thread (context such as Flask's ``g`` is not there).
        on_timeout: builds the exception raised when the time is out.
        name: the thread's name, for logs.
        stop: set when the time is out, for a ``func`` that checks it to end early.
    """
    outcome: dict[str, object] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = func()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller as is
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=name, daemon=True).start()
    if not done.wait(seconds):
        if stop is not None:
            stop.set()
        raise on_timeout()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
