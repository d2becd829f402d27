"""What defines a training run (:class:`TrainConfig`), reading it from a file, and the run's progress."""
from __future__ import annotations

import dataclasses
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .batches import BatchPlan
from .data import CropSpec
from .step import StepOptions, native_precision


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
