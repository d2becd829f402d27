"""The training loop: :func:`train` runs one :class:`RankTrainer` per process (one, or N data-parallel).

Each step's loss, time and the stop request are summed over the processes, so all of them take the
same steps and stop together; ``last.pt`` (:mod:`fcanet_core.training.state`) holds every process's
data state, so ``resume`` continues a killed run exactly where its last checkpoint left it.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..modeling import FCANet, build_model
from ..modeling.checkpoint import atomic_save
from .batches import BatchStream, SampleOrder
from .config import TrainConfig, poly_factor, run_progress
from .data import load_training_samples
from .parallel import (all_gather, all_sum, average_buffers, check_same_weights, gradient_sync, rank_generator,
                       run_data_parallel)
from .sampling import ItisMemory
from .state import METRICS_FILE, STATE_FILE, STATE_FORMAT, init_weights, read_train_state
from .step import StepRecord, prepare_model, run_step

logger = logging.getLogger(__name__)


def _evaluate(model: FCANet, config: TrainConfig) -> dict[str, float]:
    """NoC@85/90 of the current weights on the first ``eval_limit`` instances of ``eval_dir``."""
    from ..data.datasets import load_samples
    from ..evaluate import evaluate
    from ..inference.predictor import Predictor

    was_training = model.training
    model.eval()
    try:
        samples = load_samples(config.eval_dir, config.eval_limit)
        result = evaluate(Predictor(model, sis=False), samples, config.eval_max_clicks)
    finally:
        model.train(was_training)
    return {"noc85": result.noc85, "noc90": result.noc90, "eval_n": result.n,
            "miou_1": result.miou_curve[0], "spc": result.spc}


class _StopFlag:
    """Set by SIGTERM/SIGINT (when training runs in the main thread) so the loop saves and stops."""

    def __init__(self) -> None:
        self.set = False

    def __call__(self, signum: int, _frame: Any) -> None:
        logger.warning("signal %d: saving a checkpoint and stopping", signum)
        self.set = True


def train(config: TrainConfig, out_dir: str | Path, device: str = "cpu", resume: bool = False,
          init: str | Path | None = None, stop_after: int | None = None, progress: bool = True) -> Path:
    """Train (or fine-tune with ``init``) and return the path of the final training state.

    Args:
        config: the run's settings; ``config.processes > 1`` trains data-parallel on the CPU.
        out_dir: run folder for ``last.pt`` and ``metrics.jsonl``.
        device: ``"cpu"`` or ``"cuda"`` (mixed precision on CUDA).
        resume: continue from ``out_dir/last.pt`` (its model, optimizer, schedule, data order,
            ITIS memory and RNG states); the given ``config`` may only change ``max_steps`` and
            the evaluation/checkpoint settings.
        init: start from the weights of this checkpoint (a training state, a project checkpoint
            or an official state_dict) instead of the ImageNet backbone.
        stop_after: stop (with a checkpoint) after this many steps in total, keeping the LR
            schedule of ``config.max_steps``; the run can be resumed later.
        progress: show a tqdm bar with loss and images/s.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    if resume and not state_path.is_file():
        raise ValueError(f"--resume: no training state at {state_path}")
    if not resume and state_path.is_file():
        raise ValueError(f"{state_path} exists: pass resume=True (--resume) or choose another --out")
    if resume:
        trained_with = len(read_train_state(state_path)["ranks"])
        if trained_with != config.processes:
            raise ValueError(f"{state_path} was trained with {trained_with} process(es); "
                             f"the config gives {config.processes}")
    args = (config, out, device, resume, init, stop_after, progress)
    if config.processes == 1:
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        _train_rank(0, 1, *args)
    elif device != "cpu":
        raise ValueError("processes > 1 is CPU data parallelism; on CUDA use processes: 1")
    else:
        threads = max(1, (config.num_threads or torch.get_num_threads()) // config.processes)
        run_data_parallel(config.processes, _train_rank, args, threads)
    return state_path


def _train_rank(rank: int, world: int, config: TrainConfig, out: Path, device: str, resume: bool,
                init: str | Path | None, stop_after: int | None, progress: bool) -> None:
    """The training loop of one process (module level, so data-parallel processes can start it)."""
    RankTrainer(rank, world, config, out, device, resume, init).run(stop_after, progress)


class RankTrainer:
    """One process's share of a run: its samples, its part of every batch, and the shared weights."""

    def __init__(self, rank: int, world: int, config: TrainConfig, out: Path, device: str, resume: bool,
                 init: str | Path | None) -> None:
        self.rank, self.world, self.config, self.out = rank, world, config, out
        self.state_path = out / STATE_FILE
        self.device = torch.device(device)
        amp = self.device.type == "cuda"  # fp16 autocast with loss scaling on CUDA (see training.step)
        self.all_samples = load_training_samples(config.train_dirs, config.holdout_dirs)
        self.samples = self.all_samples[rank::world]
        torch.manual_seed(config.seed)  # the heads' initialisation (the same in every process)
        self.model = build_model(config.arch, **({"pretrained": config.pretrained} if config.arch == "lite0" else {}))
        if init is not None and not resume:
            init_weights(self.model, init, config.arch)
        prepare_model(self.model.to(self.device).train(), config.step_options)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config.lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay)
        self.step, self.elapsed, self.lr = 0, 0.0, config.lr
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lambda s: poly_factor(s, self.elapsed, config))
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp)
        self.rng = rank_generator(config.seed, rank)
        self.order = SampleOrder(len(self.samples))
        self.memory = ItisMemory(config.itis_probability)
        if resume:
            self._resume()
        # the data state as of the last finished step (what a checkpoint stores)
        self.data_state: dict[str, Any] = {"numpy": self.rng.bit_generator.state, "order": self.order.state_dict()}
        self.batches: BatchStream | None = None

    def _resume(self) -> None:
        """Continue from ``last.pt``: weights, optimizer, schedule, scaler, this rank's data state."""
        state = read_train_state(self.state_path)
        if state["arch"] != self.config.arch or len(self.all_samples) != state["n_samples"]:
            raise ValueError(f"{self.state_path} was trained as {state['arch']} on {state['n_samples']} samples; "
                             f"the config gives {self.config.arch} on {len(self.all_samples)}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        own = state["ranks"][self.rank]
        self.rng.bit_generator.state = own["numpy"]
        torch.set_rng_state(own["torch"])
        self.order.load_state_dict(own["order"])
        self.memory.load_state_dict(own["itis"])
        self.step, self.elapsed = state["step"], state["elapsed_s"]
        if self.rank == 0:
            logger.info("resumed %s at step %d", self.state_path, self.step)

    def save(self) -> None:
        """Write ``last.pt`` (rank 0) with every process's data state; the weights must agree."""
        self.batches.flush()  # the ITIS memory holds every finished step's clicks
        check_same_weights(self.model, self.world)
        average_buffers(self.model, self.world)
        ranks = all_gather({**self.data_state, "torch": torch.get_rng_state(), "itis": self.memory.state_dict()},
                           self.world)
        if self.rank == 0:
            atomic_save({
                "format": STATE_FORMAT, "arch": self.config.arch, "config": self.config.flat(),
                "step": self.step, "elapsed_s": self.elapsed, "n_samples": len(self.all_samples),
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "ranks": ranks,
            }, self.state_path)

    def log(self, record: dict[str, Any]) -> None:
        """Append one line to ``metrics.jsonl``."""
        with open(self.out / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")

    def evaluate(self) -> None:
        """Evaluate on ``eval_dir`` (rank 0) and log it; a failure is logged and training goes on."""
        average_buffers(self.model, self.world)
        if self.rank != 0:
            return
        try:
            metrics = _evaluate(self.model, self.config)
        except Exception:  # an evaluation failure must not end a long run
            logger.exception("evaluation at step %d failed; training goes on", self.step)
            return
        self.log({"step": self.step, **metrics})
        logger.info("step %d: NoC@85 %.2f, NoC@90 %.2f on %d instances", self.step,
                    metrics["noc85"], metrics["noc90"], metrics["eval_n"])

    def run(self, stop_after: int | None, progress: bool) -> None:
        """Train until ``max_steps``, ``stop_after``, the time budget or a signal; save; evaluate at the end."""
        config = self.config
        stop = _StopFlag()
        in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers need it
        previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)} if in_main_thread else {}
        last_step = min(config.max_steps, stop_after) if stop_after is not None else config.max_steps
        bar = tqdm(total=last_step, initial=self.step, desc="train", unit="step",
                   disable=not progress or self.rank > 0, mininterval=5)
        plan = dataclasses.replace(config.batch_plan, batch_size=config.batch_size // self.world)
        self.batches = BatchStream(self.samples, plan, self.rng, self.order, self.memory, self.step,
                                   prefetch=config.step.prefetch)
        try:
            self._loop(last_step, stop, bar)
            self.save()
            if config.eval_dir and run_progress(self.step, self.elapsed, config) >= 1.0:
                self.evaluate()
        finally:
            self.batches.close()
            bar.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
        if self.rank == 0:
            logger.info("stopped at step %d of %d (%.0f s of training)", self.step, config.max_steps, self.elapsed)

    def _loop(self, last_step: int, stop: _StopFlag, bar: tqdm) -> None:
        """The steps, with logging, checkpoints and evaluations between them."""
        config = self.config
        sync = gradient_sync(self.model, self.world)
        window = _LossWindow()
        stopping = False  # agreed by all processes (a signal reaches rank 0 only)
        while self.step < last_step and run_progress(self.step, self.elapsed, config) < 1.0 and not stopping:
            record, loss, stopping = self._step(sync, stop)
            window.add(loss)
            bar.update(1)
            finished = self.step == last_step or run_progress(self.step, self.elapsed, config) >= 1.0
            if self.rank == 0 and (self.step % config.log_every == 0 or finished):
                self._log_window(window, record, bar)
            if self.step % config.checkpoint_every == 0:
                self.save()
            if config.eval_dir and config.eval_every and self.step % config.eval_every == 0 and not finished:
                self.evaluate()
                window.restart_clock()  # the evaluation's time is not training time

    def _step(self, sync: Callable[[], None] | None, stop: _StopFlag) -> tuple[StepRecord, float, bool]:
        """One step of every process: the record, the mean loss, and whether any process must stop."""
        config = self.config
        tic = time.perf_counter()
        try:
            record = run_step(self.model, self.optimizer, self.scaler, self.batches,
                              self.memory if self.step >= config.itis_start else None, self.device,
                              config.step_options, sync)
        except FloatingPointError as exc:
            raise FloatingPointError(f"{exc} at step {self.step}") from None
        self.lr = self.optimizer.param_groups[0]["lr"]
        self.data_state = record.batch.data_state
        loss_sum, stops, seconds = all_sum([record.loss, float(stop.set), time.perf_counter() - tic], self.world)
        self.step += 1
        self.elapsed += seconds / self.world
        self.scheduler.step()
        return record, loss_sum / self.world, stops > 0

    def _log_window(self, window: _LossWindow, record: StepRecord, bar: tqdm) -> None:
        """Log the mean loss and images/s of the steps since the last log line."""
        ips = window.images_per_s(self.config.batch_size)
        bar.set_postfix(loss=f"{window.mean():.4f}", img_s=f"{ips:.1f}")
        self.log({"step": self.step, "loss": window.mean(), "lr": self.lr, "images_per_s": ips,
                  "elapsed_s": round(self.elapsed, 1), "epoch": record.batch.epoch})
        window.restart()


class _LossWindow:
    """The losses of the steps since the last log line and when that window began."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.losses: list[float] = []
        self.restart_clock()

    def restart_clock(self) -> None:
        self.started = time.perf_counter()

    def add(self, loss: float) -> None:
        self.losses.append(loss)

    def mean(self) -> float:
        return float(np.mean(self.losses))

    def images_per_s(self, batch_size: int) -> float:
        return len(self.losses) * batch_size / max(time.perf_counter() - self.started, 1e-9)
