"""What defines a training run (:class:`TrainConfig`), reading it from a file, and the run's progress."""
from __future__ import annotations

import dataclasses
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

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
    view: CropSpec = CropSpec()  # how training crops are cut (flat names: crop, short_side, scale_range, flip)
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
    step: StepOptions = StepOptions()  # how each step runs (flat names: channels_last, bf16_train, ...)
    processes: int = 1  # CPU data parallelism: processes sharing each batch (fcanet_core.training.parallel)
    extra: dict[str, Any] = field(default_factory=dict)  # free notes stored with the run

    def __post_init__(self) -> None:
        if not self.train_dirs:
            raise ValueError("train_dirs must name at least one training folder")
        if self.batch_size < 1 or self.max_steps < 1 or self.view.crop < 16:
            raise ValueError("batch_size and max_steps must be positive and crop at least 16")
        if not 0.0 <= self.itis_probability <= 1.0:
            raise ValueError("itis_probability must lie in [0, 1]")
        if self.processes < 1 or self.batch_size % self.processes:
            raise ValueError("processes must be positive and divide batch_size")

    @property
    def step_options(self) -> StepOptions:
        """``step`` as this machine runs it: CPU bfloat16 autocast only where the CPU has it natively."""
        return native_precision(self.step)

    @property
    def batch_plan(self) -> BatchPlan:
        """What each step draws (see :mod:`fcanet_core.training.batches`)."""
        return BatchPlan(self.batch_size, self.view, self.robot_rounds, self.itis_start, self.seed)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> TrainConfig:
        """A config from flat names (``crop=256``, ``prefetch=False``; what config files, YAML and
        training states hold) or nested ones (``view={"crop": 256}``); ``ValueError`` for unknown keys."""
        unknown = set(raw) - config_keys()
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        values = _lists_as_tuples(raw)
        for name, option_class in _NESTED.items():
            nested = values.get(name, {})
            if isinstance(nested, Mapping):
                unknown = set(nested) - {f.name for f in dataclasses.fields(option_class)}
                if unknown:
                    raise ValueError(f"unknown config keys {sorted(f'{name}.{k}' for k in unknown)}")
                nested = option_class(**_lists_as_tuples(nested))
            flat = {k: values.pop(k) for k in list(values) if _FLAT_TO_NESTED.get(k) == name}
            values[name] = dataclasses.replace(nested, **flat)
        return cls(**values)

    def flat(self) -> dict[str, Any]:
        """The config as one flat mapping (the nested option classes' fields at the top level), the
        form training states and run folders store; :meth:`from_mapping` reads it back."""
        values: dict[str, Any] = {}
        for name, value in dataclasses.asdict(self).items():
            values.update(value if name in _NESTED else {name: value})
        return values

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed, by flat or nested name (``crop=320`` or ``view=CropSpec(...)``)."""
        kept = {k: v for k, v in self.flat().items() if _FLAT_TO_NESTED.get(k) not in changes}
        return TrainConfig.from_mapping({**kept, **changes})


#: The option classes a :class:`TrainConfig` nests, by field name; their fields are also config keys.
_NESTED: dict[str, type] = {"view": CropSpec, "step": StepOptions}
_FLAT_TO_NESTED = {f.name: name for name, option_class in _NESTED.items() for f in dataclasses.fields(option_class)}


def config_keys() -> set[str]:
    """Every name a config mapping or :meth:`TrainConfig.replace` accepts: fields and flat option names."""
    return {f.name for f in dataclasses.fields(TrainConfig)} | set(_FLAT_TO_NESTED)


def _lists_as_tuples(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` with list values as tuples (YAML and JSON write tuples as lists)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}


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
    try:
        return TrainConfig.from_mapping(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


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
