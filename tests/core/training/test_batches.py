"""The batch stream: prefetching draws the same batches as drawing in the loop, resumes, and fails loudly."""
from __future__ import annotations

import copy
import functools
import shutil
from pathlib import Path

import numpy as np
import pytest

from fcanet_core.clicks import Click
from fcanet_core.data.datasets import load_samples
from fcanet_core.training.batches import Batch, BatchPlan, BatchStream, SampleOrder
from fcanet_core.training.data import CropSpec
from fcanet_core.training.sampling import ItisMemory

MARKER = Click(47, 47, False)
PLAN = BatchPlan(batch_size=3, crop=CropSpec(crop=48, short_side=56), robot_rounds=2, itis_start=2)


def _run(folder: Path, prefetch: bool, steps: int, rng_state: dict | None = None, order_state: dict | None = None,
         memory: ItisMemory | None = None, start_step: int = 0) -> tuple[list[Batch], ItisMemory]:
    """Draw ``steps`` batches the way the training loop does, remembering a click per example in between."""
    samples = load_samples(folder)
    rng = np.random.default_rng(7)
    if rng_state is not None:
        rng.bit_generator.state = rng_state
    order = SampleOrder(len(samples))
    if order_state is not None:
        order.load_state_dict(order_state)
    memory = memory if memory is not None else ItisMemory(probability=0.7)
    stream = BatchStream(samples, PLAN, rng, order, memory, start_step, prefetch=prefetch)
    batches = []
    try:
        for _ in range(steps):
            batch = stream.next()
            stream.finish(batch, functools.partial(_remember, batch, memory))
            batches.append(batch)
        stream.flush()
    finally:
        stream.close()
    return batches, memory


def _remember(batch: Batch, memory: ItisMemory) -> None:
    """What remember_robot_clicks does, with a marker click."""
    for example in batch.examples:
        memory.remember(example.index, example.view, [*example.clicks, MARKER])


def _same(a: Batch, b: Batch) -> bool:
    return (a.step == b.step and a.rounds == b.rounds and a.data_state == b.data_state
            and [e.index for e in a.examples] == [e.index for e in b.examples]
            and all(np.array_equal(x.image, y.image) and np.array_equal(x.gt, y.gt) and x.clicks == y.clicks
                    and x.view == y.view for x, y in zip(a.examples, b.examples)))


def test_prefetching_draws_the_same_batches_as_drawing_in_the_loop(four_images: Path) -> None:
    # 4 samples, batches of 3: consecutive batches share samples, so remembered clicks are reused.
    in_loop, _ = _run(four_images, prefetch=False, steps=8)
    ahead, _ = _run(four_images, prefetch=True, steps=8)
    assert all(_same(a, b) for a, b in zip(in_loop, ahead))
    assert [b.rounds for b in in_loop[:2]] == [0, 0] and in_loop[-1].epoch >= 5
    assert sum(MARKER in e.clicks for b in in_loop for e in b.examples) > 0  # remembered clicks came back


def test_a_stream_resumed_from_a_batch_state_continues_identically(four_images: Path) -> None:
    whole, _ = _run(four_images, prefetch=True, steps=6)
    first, memory = _run(four_images, prefetch=True, steps=3)
    state = first[-1].data_state
    rest, _ = _run(four_images, prefetch=True, steps=3, rng_state=state["numpy"], order_state=state["order"],
                   memory=copy.deepcopy(memory), start_step=3)
    assert all(_same(a, b) for a, b in zip(whole[3:], rest))


def test_drawing_before_the_previous_batch_is_finished_is_refused_without_prefetch(four_images: Path) -> None:
    samples = load_samples(four_images)
    stream = BatchStream(samples, PLAN, np.random.default_rng(0), SampleOrder(len(samples)), None)
    stream.next()
    with pytest.raises(RuntimeError, match="finish"):
        stream.next()  # 4 samples, 3 per batch: the second batch repeats a sample of the first


def test_an_unreadable_sample_surfaces_in_the_training_thread(four_images: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(four_images, broken)
    rows = (broken / "index.csv").read_text().splitlines()
    (broken / rows[2].split(",")[0]).write_bytes(b"not an image")
    with pytest.raises(OSError, match="cannot identify image"):
        _run(broken, prefetch=True, steps=4)


def test_a_failing_bookkeeping_job_surfaces_in_the_training_thread(four_images: Path) -> None:
    samples = load_samples(four_images)
    stream = BatchStream(samples, PLAN, np.random.default_rng(0), SampleOrder(len(samples)), None, prefetch=True)
    try:
        stream.finish(stream.next(), lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            stream.flush()
    finally:
        stream.close()
