"""Exporting a training state: the checkpoint's weights and metadata (recipe, data, last evaluation, lineage)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from fcanet_core import load_model
from fcanet_core.export_model import export_model, lineage_of, main
from fcanet_core.modeling import build_model
from fcanet_core.training.config import TrainConfig
from fcanet_core.training.state import METRICS_FILE, STATE_FILE, STATE_FORMAT


def _state(run: Path, config: TrainConfig) -> Path:
    """A training state as the trainer writes it (random lite0 weights, no training needed)."""
    torch.manual_seed(0)
    model = build_model("lite0")
    run.mkdir(parents=True)
    path = run / STATE_FILE
    torch.save({"format": STATE_FORMAT, "arch": "lite0", "config": config.flat(), "step": 40, "elapsed_s": 12.4,
                "n_samples": 4, "model": model.state_dict(), "ranks": []}, path)
    records = [{"step": 20, "loss": 0.5}, {"step": 20, "noc85": 5.0, "noc90": 7.0, "eval_n": 5},
               {"step": 40, "noc85": 4.0, "noc90": 6.0, "eval_n": 5}, {"step": 40, "loss": 0.4}]
    (run / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_the_checkpoint_carries_the_weights_and_the_run_in_its_metadata(tmp_path: Path) -> None:
    config = TrainConfig(train_dirs=("data/ecssd", "data/coco"), eval_dir="data/grabcut").replace(short_side=320)
    state = _state(tmp_path / "run", config)
    model = load_model(export_model(state, tmp_path / "model.pt", where="test CPU"))
    meta = model.meta
    assert meta["version"] == "lite0-step40" and meta["steps"] == 40 and meta["train_seconds"] == 12
    assert meta["data"] == ["ecssd", "coco"] and meta["input_short_side"] == 320
    assert meta["recipe"] == config.flat() and TrainConfig.from_mapping(meta["recipe"]) == config
    assert meta["metrics"] == {"grabcut_noc85": 4.0, "grabcut_noc90": 6.0, "grabcut_eval_n": 5}
    assert meta["metrics_step"] == 40
    assert meta["lineage"] == [{"version": "lite0-step40", "steps": 40, "train_seconds": 12,
                                "data": ["ecssd", "coco"], "where": "test CPU"}]
    assert meta["steps_total"] == 40 and meta["train_seconds_total"] == 12
    saved = torch.load(state, weights_only=False)["model"]
    assert all(torch.allclose(model.state_dict()[k].float(), v.float(), atol=1e-2) for k, v in saved.items())


def test_lineage_of_older_checkpoints() -> None:
    assert lineage_of({"lineage": [{"version": "a"}]}) == [{"version": "a"}]
    assert lineage_of({"version": "v1", "steps": 9, "data": ["coco"]}) == [
        {"version": "v1", "steps": 9, "train_seconds": 0, "data": ["coco"], "where": "unknown"}]
    assert lineage_of({}) == []


def test_the_command_refuses_a_file_that_is_no_training_state(tmp_path: Path, caplog) -> None:
    other = tmp_path / "model.pt"
    torch.save({"format": "something else"}, other)
    assert main(["--from", str(other), "--to", str(tmp_path / "out.pt")]) == 2
    assert "is not a training state" in caplog.text and not (tmp_path / "out.pt").exists()
