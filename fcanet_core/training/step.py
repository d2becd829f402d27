"""One training step of FCA-Net: robot rounds, forward, click loss, backward, optimizer step.

Shared by :mod:`fcanet_core.train` (the training loop) and :mod:`fcanet_core.training.bench` (its
throughput benchmark), so the benchmark times exactly the step the training runs.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..modeling import FCANet
from ..modeling.lite0 import DepthwiseConv2d
from .batches import Batch, BatchStream
from .data import Example, collate
from .losses import click_loss
from .sampling import ItisMemory, robot_update


@dataclass(frozen=True)
class StepOptions:
    """How a step runs (not what it learns): memory layout, reduced precision, batch prefetching."""

    channels_last: bool = True  # NHWC weights and images
    bf16_train: bool = True  # bfloat16 autocast of the training forward on CPU
    bf16_robot: bool = True  # bfloat16 autocast of the no-gradient robot-round forwards on CPU
    fp32_depthwise: bool = True  # depthwise convolutions stay float32 inside bfloat16 autocast (lite0)
    prefetch: bool = True  # draw the next batch in a background thread during the step


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX)."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def native_precision(options: StepOptions) -> StepOptions:
    """``options`` without CPU bfloat16 autocast where the CPU has no native bfloat16: emulated, a
    bfloat16 step is about 8× slower than float32 (AVX2-only EPYC: 0.33 against 2.66 images/s)."""
    if native_cpu_bf16():
        return options
    return dataclasses.replace(options, bf16_train=False, bf16_robot=False)


def prepare_model(model: FCANet, options: StepOptions) -> FCANet:
    """Put the model in the memory layout and precision split ``options`` ask for (in place; returns it)."""
    if options.channels_last:
        model.to(memory_format=torch.channels_last)
    for module in model.modules():
        if isinstance(module, DepthwiseConv2d):
            module.fp32_under_autocast = options.fp32_depthwise
    return model


def to_device(arrays: dict[str, np.ndarray], device: torch.device, channels_last: bool) -> dict[str, torch.Tensor]:
    """A collated batch as tensors on ``device``, the image in channels-last layout when asked."""
    batch = {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}
    if channels_last:
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
    return batch


def _autocast(device: torch.device, bf16_on_cpu: bool) -> torch.autocast:
    """fp16 autocast on CUDA; bfloat16 on CPU when asked; otherwise disabled."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_on_cpu)


def robot_rounds(model: FCANet, examples: list[Example], rounds: int, device: torch.device,
                 options: StepOptions = StepOptions()) -> list[Example]:
    """Add ``rounds`` robot clicks to every example, each on the model's current prediction (no gradient).

    The network then trains on correcting its own present mistakes, not only on the clicks
    remembered from earlier epochs.
    """
    if rounds == 0:
        return examples
    was_training = model.training
    model.eval()
    try:
        for _ in range(rounds):
            batch = to_device(collate(examples), device, options.channels_last)
            with torch.no_grad(), _autocast(device, options.bf16_robot):
                logits = model(batch["image"], batch["pos"], batch["neg"], batch["first"])
            probs = torch.sigmoid(logits.float()).cpu().numpy()[:, 0]
            examples = [dataclasses.replace(e, clicks=robot_update(e.clicks, prob, e.gt))
                        for e, prob in zip(examples, probs)]
    finally:
        model.train(was_training)
    return examples


def train_step(model: FCANet, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               examples: Sequence[Example], device: torch.device, options: StepOptions = StepOptions(),
               sync: Callable[[], None] | None = None) -> tuple[float, torch.Tensor]:
    """Forward, click loss, backward and optimizer step on ``examples``; returns (loss, main logits).

    ``sync`` runs between backward and the optimizer step (data-parallel gradient averaging).
    Raises ``FloatingPointError`` when the loss is not finite (the weights are then left unchanged).
    """
    batch = to_device(collate(examples), device, options.channels_last)
    with _autocast(device, options.bf16_train):
        logits, first_logits = model.forward_with_first_head(batch["image"], batch["pos"], batch["neg"],
                                                             batch["first"])
    logits, first_logits = logits.float(), first_logits.float()
    loss = click_loss(logits, first_logits, batch["gt"], batch["pos"], batch["neg"], batch["first"])
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss is not finite ({loss.item()})")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if sync is not None:
        sync()
    scaler.step(optimizer)
    scaler.update()
    return loss.item(), logits


def remember_robot_clicks(examples: Sequence[Example], logits: torch.Tensor, memory: ItisMemory) -> None:
    """ITIS: store each example's view and clicks plus the robot's click on the current prediction."""
    probs = torch.sigmoid(logits.detach().float()).cpu().numpy()[:, 0]
    for example, prob in zip(examples, probs):
        memory.remember(example.index, example.view, robot_update(example.clicks, prob, example.gt))


@dataclass(frozen=True)
class StepRecord:
    """What one step of :func:`run_step` trained on, its loss, and where its time went (seconds)."""

    batch: Batch
    loss: float
    data_s: float  # waiting for the batch (hidden by prefetching)
    robot_s: float  # robot rounds on the current predictions
    step_s: float  # forward, loss, backward, optimizer step, handing over the ITIS bookkeeping


def run_step(model: FCANet, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, stream: BatchStream,
             memory: ItisMemory | None, device: torch.device, options: StepOptions = StepOptions(),
             sync: Callable[[], None] | None = None) -> StepRecord:
    """The next batch of ``stream``, its robot rounds and :func:`train_step`; its ITIS clicks go to ``memory``
    (``None``: not remembered). Shared by the training loop and its throughput benchmark."""
    t0 = time.perf_counter()
    batch = stream.next()
    t1 = time.perf_counter()
    examples = robot_rounds(model, batch.examples, batch.rounds, device, options)
    t2 = time.perf_counter()
    loss, logits = train_step(model, optimizer, scaler, examples, device, options, sync)
    bookkeeping = None
    if memory is not None and memory.probability > 0:
        bookkeeping = functools.partial(remember_robot_clicks, examples, logits.detach(), memory)
    stream.finish(batch, bookkeeping)
    return StepRecord(batch, loss, t1 - t0, t2 - t1, time.perf_counter() - t2)
