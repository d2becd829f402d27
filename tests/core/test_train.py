"""Training loop: the loss falls on a tiny set, exact resume, configs, export to a loadable checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fcanet_core import load_model
from fcanet_core.export_model import export_model
from fcanet_core.train import TrainConfig, load_config, read_train_state, train
from fcanet_core.training.data import CropSpec
from tests.core.training.test_config import STORED_KEYS


def _config(data: Path, **changes) -> TrainConfig:
    base = dict(train_dirs=(str(data),), pretrained=True, crop=64, short_side=72, batch_size=2,
                max_steps=6, lr=0.01, itis_start=2, robot_rounds=2, checkpoint_every=4, log_every=1,
                num_threads=1, seed=3)
    return TrainConfig.from_mapping({**base, **changes})


def _losses(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if "loss" in r]


@pytest.mark.slow
def test_loss_falls_on_four_images_and_the_export_loads(four_images: Path, tmp_path: Path) -> None:
    config = _config(four_images, crop=128, short_side=144, batch_size=4, max_steps=30, lr=0.02,
                     itis_start=10**9)
    state = train(config, tmp_path / "run", progress=False)
    losses = _losses(tmp_path / "run")
    assert len(losses) == 30
    first, last = sum(losses[:6]) / 6, sum(losses[-6:]) / 6
    assert last < 0.8 * first, (first, last)
    out = export_model(state, tmp_path / "model.pt", name="smoke")
    model = load_model(out)
    assert model.arch == "lite0" and model.meta["version"] == "smoke" and model.meta["steps"] == 30
    assert model.meta["input_short_side"] == 144 and model.meta["recipe"]["crop"] == 128
    assert out.stat().st_size < 30e6
    trained = read_train_state(state)["model"]
    loaded = model.state_dict()
    assert all(torch.allclose(loaded[k].float(), v.float(), atol=1e-2, rtol=1e-2) for k, v in trained.items())
    # A second export naming the first as its parent carries the lineage and sums it.
    child = load_model(export_model(state, tmp_path / "child.pt", name="child", parent=out, where="test CPU"))
    assert [s["version"] for s in child.meta["lineage"]] == ["smoke", "child"]
    assert child.meta["steps_total"] == 60 and child.meta["lineage"][1]["where"] == "test CPU"
    assert child.meta["train_seconds_total"] == 2 * model.meta["train_seconds"]


@pytest.mark.slow
def test_resume_after_a_stop_equals_an_uninterrupted_run(four_images: Path, tmp_path: Path) -> None:
    config = _config(four_images)
    whole = read_train_state(train(config, tmp_path / "whole", progress=False))
    stopped = read_train_state(train(config, tmp_path / "split", stop_after=3, progress=False))
    assert stopped["step"] == 3
    # states keep the flat config of the layout before the option classes were nested (older states resume)
    assert list(stopped["config"]) == STORED_KEYS and TrainConfig.from_mapping(stopped["config"]) == config
    resumed = read_train_state(train(config, tmp_path / "split", resume=True, progress=False))
    assert resumed["step"] == whole["step"] == 6
    assert resumed["scheduler"]["last_epoch"] == whole["scheduler"]["last_epoch"]
    (mine,), (theirs,) = resumed["ranks"], whole["ranks"]
    assert mine["order"] == theirs["order"] and mine["itis"] == theirs["itis"] and mine["numpy"] == theirs["numpy"]
    for key, value in whole["model"].items():
        assert torch.allclose(resumed["model"][key].float(), value.float(), atol=1e-5), key
    for pid, buf in whole["optimizer"]["state"].items():
        assert torch.allclose(resumed["optimizer"]["state"][pid]["momentum_buffer"], buf["momentum_buffer"],
                              atol=1e-5)
    assert _losses(tmp_path / "split") == pytest.approx(_losses(tmp_path / "whole"), abs=1e-5)


def test_run_folder_and_config_errors(four_images: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no training state"):
        train(_config(four_images), tmp_path / "empty", resume=True, progress=False)
    with pytest.raises(ValueError, match="train_dirs"):
        TrainConfig()
    bad = tmp_path / "bad.yaml"
    bad.write_text("train_dirs: [x]\nlearning_rate: 1\n")
    with pytest.raises(ValueError, match="unknown config keys"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text(f"train_dirs: [{four_images}]\nmax_steps: 5\nscale_range: [0.9, 1.1]\n")
    assert load_config(good) == TrainConfig(train_dirs=(str(four_images),), max_steps=5,
                                            view=CropSpec(scale_range=(0.9, 1.1)))


def test_shipped_config_trains_only_on_the_allowed_folders() -> None:
    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "lite0_cpu.py")
    assert {Path(d).name for d in config.train_dirs} == {"ecssd", "coco"}
    assert config.arch == "lite0" and Path(config.eval_dir).name == "grabcut"


def test_main_run_config_never_trains_on_evaluation_or_held_back_data() -> None:
    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "lite0_main.py")
    names = [Path(d).name for d in config.train_dirs]
    assert set(names) == {"ecssd", "coco", "duts"} and names.count("coco") == 2  # COCO weighted twice
    assert "grabcut" not in names and "horses" not in names
    assert config.step.channels_last and config.step.bf16_robot and Path(config.eval_dir).name == "grabcut"


def test_states_of_single_process_runs_before_data_parallelism_read_as_one_rank(tmp_path: Path) -> None:
    older = {"format": "fcanet_core.train_state", "step": 7, "rng": {"numpy": {"state": 1}, "torch": torch.zeros(2)},
             "order": {"pos": 3}, "itis": {"entries": {}}}
    torch.save(older, tmp_path / "last.pt")
    (rank,) = read_train_state(tmp_path / "last.pt")["ranks"]
    assert rank["numpy"] == {"state": 1} and rank["order"] == {"pos": 3} and rank["itis"] == {"entries": {}}
    assert torch.equal(rank["torch"], torch.zeros(2))
