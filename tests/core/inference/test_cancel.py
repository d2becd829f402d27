"""A prediction stops at its next stage once its stop event is set, and runs as usual without one."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from torch import nn

from fcanet_core import Click, Predictor
from fcanet_core.inference.cancel import PredictionStopped, raise_if_stopped, stoppable

IMAGE = np.full((48, 64, 3), 120, np.uint8)


def test_a_stop_set_before_the_prediction_stops_it_before_any_work(tiny_model) -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(PredictionStopped):
        Predictor(tiny_model, device="cpu").predict(IMAGE, [Click(10, 10, True)], stop=stop)


def test_a_stop_set_during_the_network_pass_stops_it_at_the_next_layer(tiny_model) -> None:
    predictor = Predictor(tiny_model, device="cpu")
    stop = threading.Event()
    layers = [m for m in predictor.model.modules() if next(m.children(), None) is None]
    ran: list[nn.Module] = []
    layers_before_stop = 3

    def count(module: nn.Module, _inputs: object, _output: object) -> None:
        ran.append(module)
        if len(ran) == layers_before_stop:
            stop.set()                                     # as a caller that gives up would, meanwhile
    for layer in layers:
        layer.register_forward_hook(count)
    with pytest.raises(PredictionStopped):
        predictor.predict(IMAGE, [Click(10, 10, True)], stop=stop)
    assert len(ran) == layers_before_stop                  # no layer ran after the stop


def test_without_a_stop_the_prediction_is_unchanged_and_the_checks_are_registered_once(tiny_model) -> None:
    first = Predictor(tiny_model, device="cpu", fuse=False).predict(IMAGE, [Click(10, 10, True)])
    again = Predictor(tiny_model, device="cpu", fuse=False)
    hooks = sum(len(m._forward_pre_hooks) for m in again.model.modules())
    assert hooks == sum(1 for m in again.model.modules() if next(m.children(), None) is None)
    second = again.predict(IMAGE, [Click(10, 10, True)], stop=threading.Event())
    np.testing.assert_array_equal(first.prob, second.prob)


def test_the_stop_event_is_per_thread_and_restored_after_nesting() -> None:
    stop = threading.Event()
    with stoppable(stop):
        with stoppable(None):
            stop.set()
            with pytest.raises(PredictionStopped):
                raise_if_stopped()
        seen_elsewhere: list[bool] = []

        def other_thread() -> None:
            try:
                raise_if_stopped()
                seen_elsewhere.append(False)
            except PredictionStopped:
                seen_elsewhere.append(True)
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert seen_elsewhere == [False]
    raise_if_stopped()                                     # no prediction active: nothing to stop
