"""Stopping a prediction whose caller no longer waits for it.

A caller that gives up (a click past its deadline) sets a ``threading.Event``; the prediction it
handed that event to (:meth:`fcanet_core.Predictor.predict`'s ``stop``) checks it between its
stages: before each click's distance map, before every layer of a torch network, between the two
passes of flip averaging and before SIS. The prediction then raises :class:`PredictionStopped`
within one layer's time and frees what it holds (the model, a lock), instead of computing a mask
nobody reads. ONNX Runtime networks are checked between passes only.
"""
from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from torch import nn

_active = threading.local()
#: Attribute marking a module that has the check already.
_HOOKED = "_fcanet_stop_check"


class PredictionStopped(RuntimeError):
    """The prediction's caller set its stop event."""


def raise_if_stopped() -> None:
    """Raise :class:`PredictionStopped` when this thread's prediction was asked to stop."""
    stop = getattr(_active, "stop", None)
    if stop is not None and stop.is_set():
        raise PredictionStopped("the prediction was stopped: its caller gave up waiting")


@contextlib.contextmanager
def stoppable(stop: threading.Event | None) -> Iterator[None]:
    """Make ``stop`` the event :func:`raise_if_stopped` checks in this thread (``None``: keep the
    one already active, e.g. in a nested prediction)."""
    if stop is None:
        yield
        return
    previous = getattr(_active, "stop", None)
    _active.stop = stop
    try:
        raise_if_stopped()
        yield
    finally:
        _active.stop = previous


def check_before_every_layer(network: "nn.Module") -> None:
    """Register a forward pre-hook on each of ``network``'s leaf modules that calls
    :func:`raise_if_stopped` (once per module, however many predictors share it)."""
    for module in network.modules():
        if next(module.children(), None) is None and not getattr(module, _HOOKED, False):
            module.register_forward_pre_hook(lambda _module, _inputs: raise_if_stopped())
            setattr(module, _HOOKED, True)
