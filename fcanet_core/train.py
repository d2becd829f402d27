"""Training and fine-tuning of FCA-Net with simulated and iterative-training clicks.

CLI::

    python -m fcanet_core.train --config configs/lite0_cpu.py [--device cpu|cuda] [--resume]
        [--init CHECKPOINT] [--out DIR] [--max-steps N] [--time-budget SECONDS]

The run folder holds ``last.pt`` (the full training state: model, optimizer, LR schedule, step,
data order, ITIS memory and RNG states, written atomically every ``checkpoint_every`` steps and at
the end) and ``metrics.jsonl`` (the learning curve: step, loss, lr, images/s and, when evaluated,
NoC@85/90 on the evaluation folder). ``--resume`` continues a killed run exactly where its last
checkpoint left it. Export a model for use with :mod:`fcanet_core.export_model`. With
``processes: N`` in the config the run is data-parallel over N single-threaded CPU processes
(:mod:`fcanet_core.training.parallel`), each with 1/N of every batch and its own share of the samples.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import runpy
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from .cli import run_action
from .modeling import FCANet, build_model
from .modeling.checkpoint import atomic_save, load_model, resolve_checkpoint
from .training.batches import BatchPlan, BatchStream, SampleOrder
from .training.data import CropSpec, load_training_samples
from .training.parallel import (all_gather, all_sum, average_buffers, check_same_weights, gradient_sync, rank_generator,
                                run_data_parallel)
from .training.sampling import ItisMemory
from .training.step import StepOptions, native_precision, prepare_model, run_step

logger = logging.getLogger(__name__)

STATE_FORMAT = "fcanet_core.train_state"
STATE_FILE = "last.pt"
METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (paths relative to the working directory)."""

    arch: str = "lite0"
    train_dirs: tuple[str, ...] = ()
    holdout_dirs: tuple[str, ...] = ()  # split folders whose images are never trained on (fcanet_core.splits)
    pretrained: bool = True  # ImageNet backbone (lite0 only)
    crop: int = 256
    short_side: int = 352
    scale_range: tuple[float, float] = (0.7, 1.4)
    flip: bool = True
    batch_size: int = 8
    max_steps: int = 1000
    time_budget_s: float = 0.0  # >0: also end after this many seconds of training steps (see poly_factor)
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    warmup_steps: int = 0
    itis_start: int = 0  # first step whose predictions feed iterative training (ITIS)
    itis_probability: float = 0.7
    robot_rounds: int = 0  # from itis_start: 0..robot_rounds robot clicks on current predictions per step
    checkpoint_every: int = 200
    log_every: int = 20
    eval_dir: str | None = None
    eval_every: int = 0  # steps between evaluations; 0 = only at the end (if eval_dir is set)
    eval_limit: int = 10
    eval_max_clicks: int = 20
    seed: int = 0
    num_threads: int = 0  # torch CPU threads; 0 = torch's default
    channels_last: bool = True  # NHWC weights and images (see fcanet_core.training.bench)
    bf16_train: bool = True  # bfloat16 autocast of the training forward on CPUs with native bfloat16
    bf16_robot: bool = True  # bfloat16 autocast of the robot-round forwards on CPUs with native bfloat16
    fp32_depthwise: bool = True  # lite0's depthwise convolutions stay float32 under bfloat16 autocast
    prefetch: bool = True  # draw the next batch in a background thread (same batches as without)
    processes: int = 1  # CPU data parallelism: processes sharing each batch (fcanet_core.training.parallel)
    extra: dict[str, Any] = field(default_factory=dict)  # free notes stored with the run

    def __post_init__(self) -> None:
        if not self.train_dirs:
            raise ValueError("train_dirs must name at least one training folder")
        if self.batch_size < 1 or self.max_steps < 1 or self.crop < 16:
            raise ValueError("batch_size and max_steps must be positive and crop at least 16")
        if not 0.0 <= self.itis_probability <= 1.0:
            raise ValueError("itis_probability must lie in [0, 1]")
        if self.processes < 1 or self.batch_size % self.processes:
            raise ValueError("processes must be positive and divide batch_size")

    @property
    def step_options(self) -> StepOptions:
        """How each step runs: memory layout and reduced precision (CPU bfloat16 only where native)."""
        return native_precision(StepOptions(self.channels_last, self.bf16_train, self.bf16_robot,
                                            self.fp32_depthwise, self.prefetch))

    @property
    def batch_plan(self) -> BatchPlan:
        """What each step draws (see :mod:`fcanet_core.training.batches`)."""
        crop = CropSpec(self.crop, self.short_side, tuple(self.scale_range), self.flip)
        return BatchPlan(self.batch_size, crop, self.robot_rounds, self.itis_start, self.seed)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def load_config(path: str | Path) -> TrainConfig:
    """Read a config: a Python file defining ``CONFIG`` (a :class:`TrainConfig` or dict), or YAML."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file not found: {path}")
    if path.suffix == ".py":
        raw = runpy.run_path(str(path)).get("CONFIG")
        if raw is None:
            raise ValueError(f"{path} defines no CONFIG")
    else:
        raw = yaml.safe_load(path.read_text())
    if dataclasses.is_dataclass(raw) and not isinstance(raw, type):
        raw = dataclasses.asdict(raw)  # also a TrainConfig built by this module run as __main__
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: CONFIG must be a TrainConfig or a mapping")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{path}: unknown config keys {sorted(unknown)}")
    raw = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return TrainConfig(**raw)


def run_progress(step: int, elapsed_s: float, config: TrainConfig) -> float:
    """Fraction of the run done: ``step/max_steps``, or the training time spent of ``time_budget_s``
    when that is further along (a run on a shared CPU then ends on time with its LR decayed)."""
    done = step / config.max_steps
    if config.time_budget_s > 0:
        done = max(done, elapsed_s / config.time_budget_s)
    return min(done, 1.0)


def poly_factor(step: int, elapsed_s: float, config: TrainConfig) -> float:
    """LR multiplier: linear warm-up over ``warmup_steps``, then (1 − progress)^power."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    return (1.0 - run_progress(step, elapsed_s, config)) ** config.poly_power


def read_train_state(path: str | Path) -> dict[str, Any]:
    """Load a ``last.pt`` training state (on CPU); ``ValueError`` if the file is something else.

    ``state["ranks"]`` holds each process's data state: its generators (``numpy``, ``torch``), sample
    ``order`` and ITIS memory (``itis``); states written before data parallelism are read as one rank.
    """
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a training state written by fcanet_core.train")
    if "ranks" not in state:
        rng = state.pop("rng")
        state["ranks"] = [{**rng, "order": state.pop("order"), "itis": state.pop("itis")}]
    return state


def _init_weights(model: FCANet, path: str | Path, arch: str) -> None:
    """Copy weights from a training state or any checkpoint :func:`fcanet_core.load_model` reads."""
    path = resolve_checkpoint(path)
    try:
        state = read_train_state(path)
        source_arch, weights = state["arch"], state["model"]
    except ValueError:
        source = load_model(str(path), "cpu")
        source_arch, weights = source.arch, source.state_dict()
    if source_arch != arch:
        raise ValueError(f"--init checkpoint {path} is a {source_arch!r} model but the config trains {arch!r}")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    logger.info("initialised from %s", path)


def _evaluate(model: FCANet, config: TrainConfig) -> dict[str, float]:
    """NoC@85/90 of the current weights on the first ``eval_limit`` instances of ``eval_dir``."""
    from .data.datasets import load_samples
    from .evaluate import evaluate
    from .inference.predictor import Predictor

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
    """The training loop of one process: its share of the samples and of every batch (see :func:`train`)."""
    state_path = out / STATE_FILE
    dev = torch.device(device)
    amp = dev.type == "cuda"  # fp16 autocast with loss scaling on CUDA (see train_step)

    all_samples = load_training_samples(config.train_dirs, config.holdout_dirs)
    samples = all_samples[rank::world]
    torch.manual_seed(config.seed)  # the heads' initialisation (the same in every process)
    model = build_model(config.arch, **({"pretrained": config.pretrained} if config.arch == "lite0" else {}))
    if init is not None and not resume:
        _init_weights(model, init, config.arch)
    prepare_model(model.to(dev).train(), config.step_options)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    step, elapsed = 0, 0.0
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: poly_factor(s, elapsed, config))
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    rng = rank_generator(config.seed, rank)
    order = SampleOrder(len(samples))
    memory = ItisMemory(config.itis_probability)

    if resume:
        state = read_train_state(state_path)
        if state["arch"] != config.arch or len(all_samples) != state["n_samples"]:
            raise ValueError(f"{state_path} was trained as {state['arch']} on {state['n_samples']} samples; "
                             f"the config gives {config.arch} on {len(all_samples)}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        own = state["ranks"][rank]
        rng.bit_generator.state = own["numpy"]
        torch.set_rng_state(own["torch"])
        order.load_state_dict(own["order"])
        memory.load_state_dict(own["itis"])
        step, elapsed = state["step"], state["elapsed_s"]
        if rank == 0:
            logger.info("resumed %s at step %d", state_path, step)
    data_state: dict[str, Any] = {"numpy": rng.bit_generator.state, "order": order.state_dict()}  # as of the last step

    def save() -> None:
        batches.flush()  # the ITIS memory holds every finished step's clicks
        check_same_weights(model, world)
        average_buffers(model, world)
        ranks = all_gather({**data_state, "torch": torch.get_rng_state(), "itis": memory.state_dict()}, world)
        if rank == 0:
            atomic_save({
                "format": STATE_FORMAT, "arch": config.arch, "config": dataclasses.asdict(config),
                "step": step, "elapsed_s": elapsed, "n_samples": len(all_samples),
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "ranks": ranks,
            }, state_path)

    def log(record: dict[str, Any]) -> None:
        with open(out / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")

    def run_eval() -> None:
        average_buffers(model, world)
        if rank != 0:
            return
        try:
            metrics = _evaluate(model, config)
        except Exception:  # an evaluation failure must not end a long run
            logger.exception("evaluation at step %d failed; training goes on", step)
            return
        log({"step": step, **metrics})
        logger.info("step %d: NoC@85 %.2f, NoC@90 %.2f on %d instances", step,
                    metrics["noc85"], metrics["noc90"], metrics["eval_n"])

    stop = _StopFlag()
    in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers need it
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)} if in_main_thread else {}
    last_step = min(config.max_steps, stop_after) if stop_after is not None else config.max_steps
    bar = tqdm(total=last_step, initial=step, desc="train", unit="step", disable=not progress or rank > 0,
               mininterval=5)
    window: list[float] = []
    window_start = time.perf_counter()
    plan = dataclasses.replace(config.batch_plan, batch_size=config.batch_size // world)
    batches = BatchStream(samples, plan, rng, order, memory, step, prefetch=config.prefetch)
    sync = gradient_sync(model, world)
    try:
        stopping = False  # agreed by all processes (a signal reaches rank 0 only)
        while step < last_step and run_progress(step, elapsed, config) < 1.0 and not stopping:
            tic = time.perf_counter()
            try:
                record = run_step(model, optimizer, scaler, batches, memory if step >= config.itis_start else None,
                                  dev, config.step_options, sync)
            except FloatingPointError as exc:
                raise FloatingPointError(f"{exc} at step {step}") from None
            lr = optimizer.param_groups[0]["lr"]
            data_state = record.batch.data_state
            loss_sum, stops, seconds = all_sum([record.loss, float(stop.set), time.perf_counter() - tic], world)
            stopping = stops > 0
            step += 1
            elapsed += seconds / world
            scheduler.step()
            window.append(loss_sum / world)
            bar.update(1)
            finished = step == last_step or run_progress(step, elapsed, config) >= 1.0
            if rank == 0 and (step % config.log_every == 0 or finished):
                now = time.perf_counter()
                ips = len(window) * config.batch_size / max(now - window_start, 1e-9)
                bar.set_postfix(loss=f"{np.mean(window):.4f}", img_s=f"{ips:.1f}")
                log({"step": step, "loss": float(np.mean(window)), "lr": lr, "images_per_s": ips,
                     "elapsed_s": round(elapsed, 1), "epoch": record.batch.epoch})
                window, window_start = [], now
            if step % config.checkpoint_every == 0:
                save()
            if config.eval_dir and config.eval_every and step % config.eval_every == 0 and not finished:
                run_eval()
                window_start = time.perf_counter()
        save()
        if config.eval_dir and run_progress(step, elapsed, config) >= 1.0:
            run_eval()
    finally:
        batches.close()
        bar.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if rank == 0:
        logger.info("stopped at step %d of %d (%.0f s of training)", step, config.max_steps, elapsed)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fcanet_core.train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="Python (defining CONFIG) or YAML config file")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--init", default=None, help="start from this checkpoint's weights (fine-tuning)")
    parser.add_argument("--out", default="runs/train", help="run folder (default runs/train)")
    parser.add_argument("--max-steps", type=int, default=None, help="override the config's max_steps")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="override the config's time_budget_s (seconds of training steps)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parse_args(argv)

    def action() -> Path:
        config = load_config(args.config)
        if args.max_steps is not None:
            config = config.replace(max_steps=args.max_steps)
        if args.time_budget is not None:
            config = config.replace(time_budget_s=args.time_budget)
        return train(config, args.out, device=args.device, resume=args.resume, init=args.init)

    return run_action(action, logger, errors=(ValueError,))


if __name__ == "__main__":
    sys.exit(main())
