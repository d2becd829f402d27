"""Training config: nested option classes, flat names in files and ``replace``, the stored flat form."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fcanet_core.training.config import TrainConfig, config_keys, load_config, poly_factor, run_progress
from fcanet_core.training.data import CropSpec
from fcanet_core.training.step import StepOptions

REPO = Path(__file__).resolve().parents[3]

#: The keys of the flat config every training state and ``config.json`` holds, in the order written
#: before the option classes were nested (states of older runs carry exactly these).
STORED_KEYS = ["arch", "train_dirs", "holdout_dirs", "pretrained", "crop", "short_side", "scale_range", "flip",
               "batch_size", "max_steps", "time_budget_s", "lr", "momentum", "weight_decay", "poly_power",
               "warmup_steps", "itis_start", "itis_probability", "robot_rounds", "checkpoint_every", "log_every",
               "eval_dir", "eval_every", "eval_limit", "eval_max_clicks", "seed", "num_threads", "channels_last",
               "bf16_train", "bf16_robot", "fp32_depthwise", "prefetch", "processes", "extra"]


def test_flat_names_change_the_nested_options() -> None:
    config = TrainConfig(train_dirs=("a",)).replace(crop=320, flip=False, prefetch=False, bf16_train=False, lr=0.5)
    assert config.view == CropSpec(crop=320, short_side=352, scale_range=(0.7, 1.4), flip=False)
    assert config.step == StepOptions(bf16_train=False, prefetch=False) and config.lr == 0.5
    assert config.batch_plan.crop is config.view


def test_a_nested_option_class_replaces_all_its_fields_and_flat_names_apply_on_top() -> None:
    config = TrainConfig(train_dirs=("a",)).replace(crop=320)
    assert config.replace(view=CropSpec(short_side=400)).view == CropSpec(short_side=400)
    assert config.replace(view=CropSpec(short_side=400), crop=64).view == CropSpec(crop=64, short_side=400)


def test_every_option_class_field_is_a_config_key() -> None:
    names = {f.name for cls in (CropSpec, StepOptions) for f in dataclasses.fields(cls)}
    assert names <= config_keys() and {"view", "step", "lr"} <= config_keys()


def test_the_stored_flat_form_keeps_the_old_keys_and_reads_back() -> None:
    config = TrainConfig(train_dirs=("a", "b"), extra={"note": 1}).replace(scale_range=(0.9, 1.1), channels_last=False)
    flat = config.flat()
    assert list(flat) == STORED_KEYS
    assert flat["scale_range"] == (0.9, 1.1) and flat["channels_last"] is False and flat["extra"] == {"note": 1}
    assert TrainConfig.from_mapping(flat) == config
    nested = TrainConfig.from_mapping({"train_dirs": ["a", "b"], "extra": {"note": 1},
                                       "view": {"scale_range": [0.9, 1.1]}, "step": {"channels_last": False}})
    assert nested == config


def test_unknown_keys_and_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown config keys \['learning_rate'\]"):
        TrainConfig.from_mapping({"train_dirs": ["a"], "learning_rate": 1})
    with pytest.raises(ValueError, match=r"unknown config keys \['view.size'\]"):
        TrainConfig.from_mapping({"train_dirs": ["a"], "view": {"size": 3}})
    with pytest.raises(ValueError, match="crop at least 16"):
        TrainConfig(train_dirs=("a",)).replace(crop=8)
    with pytest.raises(ValueError, match="unknown config keys"):
        TrainConfig(train_dirs=("a",)).replace(bf16=True)


def test_the_config_files_load_with_their_flat_overrides() -> None:
    cpu = load_config(REPO / "configs" / "lite0_cpu.py")
    main = load_config(REPO / "configs" / "lite0_main.py")
    device = load_config(REPO / "configs" / "lite0_device.py")
    assert cpu.view == CropSpec(256, 352, (0.7, 1.4), True) and cpu.step == StepOptions()
    assert main.view == cpu.view and main.lr == 0.004 and main.holdout_dirs == ("splits/val",)
    assert device.batch_size == 32 and device.view == cpu.view and device.eval_dir is None


def test_yaml_config_with_flat_names(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("train_dirs: [x]\ncrop: 64\nscale_range: [0.9, 1.1]\nbf16_robot: false\n")
    config = load_config(path)
    assert config.view == CropSpec(crop=64, scale_range=(0.9, 1.1)) and config.step == StepOptions(bf16_robot=False)
    path.write_text("train_dirs: [x]\nview: {crop: 4}\n")
    with pytest.raises(ValueError, match="run.yaml: .*crop at least 16"):
        load_config(path)


def test_schedule_warms_up_then_decays_with_steps_or_time() -> None:
    config = TrainConfig(train_dirs=("a",), max_steps=100, warmup_steps=10, poly_power=1.0, time_budget_s=50.0)
    assert poly_factor(0, 0.0, config) == pytest.approx(0.1)
    assert poly_factor(50, 0.0, config) == pytest.approx(0.5)
    assert run_progress(20, 40.0, config) == pytest.approx(0.8)  # time is further along than steps
    assert run_progress(200, 0.0, config) == 1.0
