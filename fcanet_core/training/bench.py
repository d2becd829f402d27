"""Training throughput: images/s of the real training step under several step options, side by side.

``python -m fcanet_core.bench --train --config configs/lite0_main.py --steps 8 --json OUT``

Every variant runs the same step as :mod:`fcanet_core.train` (views read and cropped from the
training folders, simulated clicks, robot rounds on the current predictions, forward, click loss,
backward, SGD step, ITIS bookkeeping) on the same sample order, views and robot-round counts, from
the same random initial weights, so the variants differ only in how the step runs. Each variant
reports images/s and where the time goes (data: the wait for the next batch, which prefetching
hides; robot rounds; gradient step). ``default_2_processes`` runs the default step data-parallel
(:mod:`fcanet_core.training.parallel`): two single-threaded processes, each with half of every batch
drawn from its own half of the samples, averaging gradients; its phases and loss are rank 0's.
"""
from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import torch

from ..data.datasets import Sample
from ..modeling import build_model
from .batches import BatchStream, SampleOrder
from .config import TrainConfig
from .data import load_training_samples
from .parallel import gradient_sync, rank_generator, run_data_parallel
from .sampling import ItisMemory
from .step import StepOptions, native_precision, prepare_model, run_step

_BEFORE = StepOptions(channels_last=False, bf16_train=False, bf16_robot=False, fp32_depthwise=False, prefetch=False)


@dataclass(frozen=True)
class Variant:
    """How a benched step runs: its step options, and the data-parallel processes sharing each batch."""

    options: StepOptions
    processes: int = 1


# The step as it ran before these options existed, then each option alone and the combinations.
VARIANTS: dict[str, Variant] = {
    "baseline_fp32_nchw": Variant(_BEFORE),
    "channels_last": Variant(replace(_BEFORE, channels_last=True)),
    "bf16_robot": Variant(replace(_BEFORE, bf16_robot=True)),
    "bf16_train_and_robot": Variant(replace(_BEFORE, bf16_train=True, bf16_robot=True)),
    "channels_last_bf16_robot": Variant(replace(_BEFORE, channels_last=True, bf16_robot=True)),
    "channels_last_bf16_train_and_robot": Variant(replace(_BEFORE, channels_last=True, bf16_train=True,
                                                          bf16_robot=True)),
    "channels_last_bf16_train_and_robot_fp32_depthwise": Variant(replace(_BEFORE, channels_last=True, bf16_train=True,
                                                                         bf16_robot=True, fp32_depthwise=True)),
    "channels_last_bf16_robot_prefetch": Variant(replace(_BEFORE, channels_last=True, bf16_robot=True,
                                                         prefetch=True)),
    "default": Variant(native_precision(StepOptions())),  # what training runs on this CPU
    "default_2_processes": Variant(native_precision(StepOptions()), processes=2),
}


def bench_variant(config: TrainConfig, samples: Sequence[Sample], variant: Variant, steps: int, warmup: int,
                  seed: int = 0, device: str = "cpu") -> dict[str, object]:
    """Time ``steps`` training steps (after ``warmup`` untimed ones) of ``config`` on ``samples`` run as ``variant``."""
    config = config.replace(processes=variant.processes)  # ValueError unless they divide the batch
    args = (config, samples, variant.options, steps, warmup, seed, device)
    if variant.processes == 1:
        timings = _bench_rank(0, 1, *args)
    else:
        threads = max(1, torch.get_num_threads() // variant.processes)
        timings = run_data_parallel(variant.processes, _bench_rank, args, threads)
    phases, losses = timings
    total = sum(phases["total"])
    return {
        "options": asdict(variant.options),
        "processes": variant.processes,
        "images_per_s": steps * config.batch_size / total,
        "seconds_per_step": {name: statistics.fmean(v) for name, v in phases.items()},
        "mean_loss": statistics.fmean(losses),
    }


def _bench_rank(rank: int, world: int, config: TrainConfig, samples: Sequence[Sample], options: StepOptions,
                steps: int, warmup: int, seed: int, device: str) -> tuple[dict[str, list[float]], list[float]]:
    """One process's share of :func:`bench_variant`: its step phases (seconds) and losses (rank 0's share)."""
    dev = torch.device(device)
    torch.manual_seed(seed)
    model = prepare_model(build_model(config.arch, pretrained=False).to(dev).train(), options)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=dev.type == "cuda")
    memory = ItisMemory(config.itis_probability)
    plan = replace(config.batch_plan, itis_start=0, batch_size=config.batch_size // world)  # robot rounds at once
    share = samples[rank::world]
    stream = BatchStream(share, plan, rank_generator(seed, rank), SampleOrder(len(share)), memory,
                         prefetch=options.prefetch)
    sync = gradient_sync(model, world)
    phases: dict[str, list[float]] = {"data": [], "robot": [], "step": [], "total": []}
    losses: list[float] = []
    try:
        for i in range(warmup + steps):
            record = run_step(model, optimizer, scaler, stream, memory, dev, options, sync)
            if i >= warmup:
                for name, seconds in (("data", record.data_s), ("robot", record.robot_s), ("step", record.step_s)):
                    phases[name].append(seconds)
                phases["total"].append(record.data_s + record.robot_s + record.step_s)
                losses.append(record.loss)
    finally:
        stream.close()
    return phases, losses


def run_train_bench(config: TrainConfig, variants: Sequence[str], steps: int, warmup: int,
                    device: str = "cpu") -> dict[str, object]:
    """Bench each named variant in turn; speed-ups are relative to the first one."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    samples = load_training_samples(config.train_dirs, config.holdout_dirs)
    results = {name: bench_variant(config, samples, VARIANTS[name], steps, warmup, device=device)
               for name in variants}
    reference = results[variants[0]]["images_per_s"]
    for result in results.values():
        result["speedup"] = result["images_per_s"] / reference
    return {
        "mode": "train",
        "arch": config.arch,
        "batch_size": config.batch_size,
        "crop": config.view.crop,
        "robot_rounds": config.robot_rounds,
        "steps": steps,
        "warmup": warmup,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "variants": results,
    }
