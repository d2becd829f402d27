"""The stream of training batches: epoch-wise sample order, views, clicks and robot-round counts.

One random generator draws everything a step needs besides the network (the sample order, each
view and its simulated or remembered clicks), in that order, so a run is reproducible and resumable
from :attr:`Batch.data_state`; the number of robot rounds of a step is a function of the step (the
same in every data-parallel process). With ``prefetch`` the next batch is
drawn in a background thread while the current one trains (reading, scaling and cropping release
the GIL; the step's torch threads leave gaps), and a finished batch's ITIS bookkeeping (the robot's
click on each prediction) runs in a second one. The batches are the same as without prefetching,
because a batch that shares a sample with an unfinished one waits until that one's clicks are
remembered (:meth:`BatchStream.finish`).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.datasets import Sample
from .data import CropSpec, Example, make_example
from .sampling import ItisMemory


class SampleOrder:
    """Epoch-wise random order over ``n`` samples, resumable from its state."""

    def __init__(self, n: int) -> None:
        self.n, self.perm, self.pos, self.epoch = n, np.zeros(0, dtype=np.int64), 0, -1

    def take(self, k: int, rng: np.random.Generator) -> list[int]:
        """The next ``k`` sample indices; a new permutation starts each epoch."""
        out: list[int] = []
        while len(out) < k:
            if self.pos >= self.perm.size:
                self.perm, self.pos, self.epoch = rng.permutation(self.n), 0, self.epoch + 1
            out.append(int(self.perm[self.pos]))
            self.pos += 1
        return out

    def state_dict(self) -> dict[str, Any]:
        """Picklable state for checkpoints."""
        return {"perm": self.perm.tolist(), "pos": self.pos, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.perm, self.pos, self.epoch = np.asarray(state["perm"], dtype=np.int64), state["pos"], state["epoch"]


@dataclass(frozen=True)
class BatchPlan:
    """What the stream draws per step."""

    batch_size: int
    crop: CropSpec
    robot_rounds: int = 0  # 0..robot_rounds (uniform) robot rounds per step from ``itis_start``
    itis_start: int = 0
    rounds_seed: int = 0  # the rounds of step k come from (rounds_seed, k): data-parallel processes agree


@dataclass(frozen=True)
class Batch:
    """One step's examples, its robot-round count, and the data state right after it was drawn."""

    step: int
    examples: list[Example]
    rounds: int
    data_state: dict[str, Any]  # {"numpy": generator state, "order": SampleOrder state}: what a checkpoint saves
    epoch: int


class _Stop:
    """Queue marker: the producer ended with ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class BatchStream:
    """Draws the batches of steps ``start_step``, ``start_step + 1``, … in order.

    Args:
        samples: the training samples.
        plan: batch size, view settings and robot rounds.
        rng: the run's generator (owned by the stream from now on).
        order: the run's sample order (owned by the stream from now on).
        memory: the ITIS memory; the stream reads it, the bookkeeping given to :meth:`finish` writes it.
        start_step: the step of the first batch.
        prefetch: draw the next batch in a background thread and run the bookkeeping in another.
    """

    def __init__(self, samples: Sequence[Sample], plan: BatchPlan, rng: np.random.Generator, order: SampleOrder,
                 memory: ItisMemory | None, start_step: int = 0, prefetch: bool = False) -> None:
        self._samples, self._plan, self._rng, self._order, self._memory = samples, plan, rng, order, memory
        self._step = start_step
        self._prefetch = prefetch
        self._training: set[int] = set()  # samples of drawn batches whose clicks are not remembered yet
        self._cond = threading.Condition()
        self._closed = False
        self._queue: queue.Queue[Batch | _Stop] = queue.Queue(maxsize=1)
        self._thread: threading.Thread | None = None
        self._bookkeeping = ThreadPoolExecutor(1, thread_name_prefix="itis") if prefetch else None
        self._pending: list[Future[None]] = []
        if prefetch:
            self._thread = threading.Thread(target=self._produce, name="batch-prefetch", daemon=True)
            self._thread.start()

    def next(self) -> Batch:
        """The next step's batch (re-raises an error of the background thread)."""
        if not self._prefetch:
            return self._draw()
        item = self._queue.get()
        if isinstance(item, _Stop):
            raise item.error
        return item

    def finish(self, batch: Batch, bookkeeping: Callable[[], None] | None = None) -> None:
        """``batch`` has trained: run its ``bookkeeping`` (remembering its ITIS clicks; in the background
        with prefetching), after which its samples may be drawn again. Re-raises an earlier job's error."""
        self._check_pending()
        if self._bookkeeping is None:
            if bookkeeping is not None:
                bookkeeping()
            self._release(batch)
            return

        def job() -> None:
            try:
                if bookkeeping is not None:
                    bookkeeping()
            finally:
                self._release(batch)

        self._pending.append(self._bookkeeping.submit(job))

    def flush(self) -> None:
        """Wait until every finished batch's bookkeeping is done (before saving the ITIS memory)."""
        for future in self._pending:
            future.result()
        self._pending.clear()

    def _check_pending(self) -> None:
        done = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for future in done:
            future.result()

    def _release(self, batch: Batch) -> None:
        with self._cond:
            self._training.difference_update(e.index for e in batch.examples)
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the background threads (a batch drawn ahead is dropped; its state was never saved)."""
        if self._bookkeeping is not None:
            self._bookkeeping.shutdown(wait=True)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            while self._thread.is_alive():
                try:
                    self._queue.get(timeout=0.05)  # unblock a producer waiting to put
                except queue.Empty:
                    pass
            self._thread = None

    def _draw(self) -> Batch:
        plan = self._plan
        indices = self._order.take(plan.batch_size, self._rng)
        with self._cond:  # remembered clicks of a sample still training are not final yet
            if not self._prefetch and not self._training.isdisjoint(indices):
                raise RuntimeError("a batch was drawn before the previous one was marked finish()ed")
            self._cond.wait_for(lambda: self._closed or self._training.isdisjoint(indices))
            self._training.update(indices)
        examples = [make_example(self._samples, i, plan.crop, self._rng, self._memory) for i in indices]
        rounds = 0
        if plan.robot_rounds and self._step >= plan.itis_start:
            rounds = int(np.random.default_rng((plan.rounds_seed, self._step)).integers(0, plan.robot_rounds + 1))
        state = {"numpy": self._rng.bit_generator.state, "order": self._order.state_dict()}
        batch = Batch(self._step, examples, rounds, state, self._order.epoch)
        self._step += 1
        return batch

    def _produce(self) -> None:
        while not self._closed:
            try:
                item: Batch | _Stop = self._draw()
            except BaseException as exc:  # handed to the training thread, which re-raises it
                item = _Stop(exc)
            while not self._closed:
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, _Stop):
                return
