"""Training throughput: images/s of the real training step under several step options, side by side.

``python -m fcanet_core.bench --train --config configs/lite0_main.py --steps 8 --json OUT``

Every variant runs the same step as :mod:`fcanet_core.train` (views read and cropped from the
training folders, simulated clicks, robot rounds on the current predictions, forward, click loss,
backward, SGD step, ITIS bookkeeping) on the same sample order, views and robot-round counts, from
the same random initial weights, so the variants differ only in how the step runs. Each variant
reports images/s and where the time goes (data: the wait for the next batch, which prefetching
hides; robot rounds; gradient step).
"""
from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, replace

import numpy as np
import torch

from .datasets import Sample
from .model import build_model
from .sampling import ItisMemory
from .train import TrainConfig
from .train_batches import BatchStream, SampleOrder
from .train_data import load_training_samples
from .train_step import StepOptions, prepare_model, remember_robot_clicks, robot_rounds, train_step

_BEFORE = StepOptions(channels_last=False, bf16_train=False, bf16_robot=False, fp32_depthwise=False, prefetch=False)

# The step as it ran before these options existed, then each option alone and the combinations.
VARIANTS: dict[str, StepOptions] = {
    "baseline_fp32_nchw": _BEFORE,
    "channels_last": replace(_BEFORE, channels_last=True),
    "bf16_robot": replace(_BEFORE, bf16_robot=True),
    "bf16_train_and_robot": replace(_BEFORE, bf16_train=True, bf16_robot=True),
    "channels_last_bf16_robot": replace(_BEFORE, channels_last=True, bf16_robot=True),
    "channels_last_bf16_train_and_robot": replace(_BEFORE, channels_last=True, bf16_train=True, bf16_robot=True),
    "channels_last_bf16_train_and_robot_fp32_depthwise": replace(_BEFORE, channels_last=True, bf16_train=True,
                                                                 bf16_robot=True, fp32_depthwise=True),
    "channels_last_bf16_robot_prefetch": replace(_BEFORE, channels_last=True, bf16_robot=True, prefetch=True),
    "default": StepOptions(),
}


def bench_variant(config: TrainConfig, samples: Sequence[Sample], options: StepOptions, steps: int, warmup: int,
                  seed: int = 0, device: str = "cpu") -> dict[str, object]:
    """Time ``steps`` training steps (after ``warmup`` untimed ones) of ``config`` on ``samples`` run with ``options``."""
    dev = torch.device(device)
    torch.manual_seed(seed)
    model = prepare_model(build_model(config.arch, pretrained=False).to(dev).train(), options)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=dev.type == "cuda")
    memory = ItisMemory(config.itis_probability)
    plan = replace(config.batch_plan, itis_start=0)  # robot rounds from the first step: the full step
    stream = BatchStream(samples, plan, np.random.default_rng(seed), SampleOrder(len(samples)), memory,
                         prefetch=options.prefetch)
    phases: dict[str, list[float]] = {"data": [], "robot": [], "step": [], "total": []}
    losses: list[float] = []
    try:
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            batch = stream.next()
            t1 = time.perf_counter()
            examples = robot_rounds(model, batch.examples, batch.rounds, dev, options)
            t2 = time.perf_counter()
            loss, logits = train_step(model, optimizer, scaler, examples, dev, options)
            stream.finish(batch, functools.partial(remember_robot_clicks, examples, logits.detach(), memory))
            t3 = time.perf_counter()
            if i >= warmup:
                for name, seconds in (("data", t1 - t0), ("robot", t2 - t1), ("step", t3 - t2), ("total", t3 - t0)):
                    phases[name].append(seconds)
                losses.append(loss)
    finally:
        stream.close()
    total = sum(phases["total"])
    return {
        "options": asdict(options),
        "images_per_s": steps * config.batch_size / total,
        "seconds_per_step": {name: statistics.fmean(v) for name, v in phases.items()},
        "mean_loss": statistics.fmean(losses),
    }


def run_train_bench(config: TrainConfig, variants: Sequence[str], steps: int, warmup: int,
                    device: str = "cpu") -> dict[str, object]:
    """Bench each named variant in turn; speed-ups are relative to the first one."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    samples = load_training_samples(config.train_dirs)
    results = {name: bench_variant(config, samples, VARIANTS[name], steps, warmup, device=device)
               for name in variants}
    reference = results[variants[0]]["images_per_s"]
    for result in results.values():
        result["speedup"] = result["images_per_s"] / reference
    return {
        "mode": "train",
        "arch": config.arch,
        "batch_size": config.batch_size,
        "crop": config.crop,
        "robot_rounds": config.robot_rounds,
        "steps": steps,
        "warmup": warmup,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "variants": results,
    }
