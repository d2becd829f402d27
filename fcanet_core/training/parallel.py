"""Data-parallel training on one machine's CPU cores: N single-threaded processes, one share of the batch each.

Most operators of a lite0 training step (depthwise convolutions, batch norm, the robot's distance
transforms, batch drawing) scale poorly with threads, so N processes with one thread and 1/N of
the batch each step faster than one process with N threads. After every backward pass the
processes average their gradients (gloo all-reduce), so they keep identical weights and take the
optimizer step one process would take on the whole batch; only batch-norm statistics are per
process (over its share of the batch).

Rank 0 runs in the calling process (it owns the progress bar, signals, checkpoints and logs);
ranks 1..N-1 are spawned child processes that ignore SIGINT/SIGTERM and follow rank 0's decision
to stop (:func:`all_sum` of a stop flag every step). A child that fails makes rank 0's next
collective fail, which ends the run with an error; rank 0 ending ends the children.
"""
from __future__ import annotations

import datetime
import hashlib
import logging
import multiprocessing
import signal
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from ..cli import free_port

logger = logging.getLogger(__name__)

T = TypeVar("T")
TIMEOUT = datetime.timedelta(minutes=30)  # a collective waits this long (rank 0 may be evaluating)


def _join_group(rank: int, world_size: int, address: str, threads: int) -> None:
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=world_size, timeout=TIMEOUT)


def _child(target: Callable[..., Any], rank: int, world_size: int, address: str, threads: int,
           args: tuple[Any, ...]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # rank 0 decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s %(levelname)s rank {rank} %(name)s: %(message)s")
    _join_group(rank, world_size, address, threads)
    try:
        target(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


def run_data_parallel(world_size: int, target: Callable[..., T], args: tuple[Any, ...], threads: int = 1) -> T:
    """Run ``target(rank, world_size, *args)`` in ``world_size`` processes of ``threads`` torch threads each.

    Rank 0 runs here and its result is returned; the others are spawned (``args`` must pickle).
    Raises ``RuntimeError`` when a child process fails.
    """
    if world_size < 2:
        raise ValueError("data-parallel training needs at least 2 processes")
    address = f"tcp://127.0.0.1:{free_port()}"
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_child, args=(target, rank, world_size, address, threads, args),
                                name=f"train-rank-{rank}", daemon=True) for rank in range(1, world_size)]
    for child in children:
        child.start()
    threads_before = torch.get_num_threads()
    try:
        _join_group(0, world_size, address, threads)
        try:
            result = target(0, world_size, *args)
        finally:
            dist.destroy_process_group()
        for child in children:
            child.join(timeout=60)
    except Exception as exc:
        for child in children:
            child.join(timeout=10)  # a process that failed is still exiting when rank 0's collective fails
        ended = [(c.name, c.exitcode) for c in children if c.exitcode not in (None, 0)]
        if ended:  # e.g. rank 0's collective failed because a process ended: name it
            raise RuntimeError(f"data-parallel processes ended early (name, exit code) {ended}; rank 0: {exc}") from exc
        raise
    finally:
        torch.set_num_threads(threads_before)
        for child in children:
            if child.is_alive():
                child.terminate()
                child.join()
    failed = [(c.name, c.exitcode) for c in children if c.exitcode != 0]
    if failed:
        raise RuntimeError(f"data-parallel processes failed: {failed}")
    return result


def rank_generator(seed: int, rank: int) -> np.random.Generator:
    """The data generator of process ``rank``: rank 0's is a one-process run's, the others' differ."""
    return np.random.default_rng(seed if rank == 0 else (seed, rank))


def gradient_sync(model: torch.nn.Module, world_size: int) -> Callable[[], None] | None:
    """What :func:`fcanet_core.training.step.train_step` runs between backward and step: the gradient average
    over the processes (``None`` for one process)."""
    if world_size == 1:
        return None
    parameters = list(model.parameters())
    return lambda: average_gradients(parameters, world_size)


def average_gradients(parameters: Iterable[torch.nn.Parameter], world_size: int) -> None:
    """Replace every parameter's gradient by its mean over the processes (one all-reduce)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset:offset + grad.numel()].view(grad.shape))
        offset += grad.numel()


def average_buffers(module: torch.nn.Module, world_size: int) -> None:
    """Average floating-point buffers (batch-norm running statistics) over the processes."""
    if world_size == 1:
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer /= world_size


def all_sum(values: Sequence[float], world_size: int) -> list[float]:
    """Each value summed over the processes (every process gets the sums)."""
    if world_size == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_gather(obj: T, world_size: int) -> list[T]:
    """Every process's ``obj`` (picklable), in rank order."""
    if world_size == 1:
        return [obj]
    gathered: list[Any] = [None] * world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def check_same_weights(module: torch.nn.Module, world_size: int) -> None:
    """Raise ``RuntimeError`` unless every process holds bit-identical parameters (checked at checkpoints)."""
    if world_size == 1:
        return
    digest = hashlib.sha256()
    for param in module.parameters():
        digest.update(param.detach().cpu().numpy().tobytes())
    digests = all_gather(digest.hexdigest(), world_size)
    if len(set(digests)) != 1:
        raise RuntimeError("data-parallel processes hold different weights")
