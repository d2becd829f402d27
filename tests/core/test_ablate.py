"""Recipe ablations: arms train from one start for the same time, are scored, and are not run twice."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fcanet_core.ablate import ArmRun, arm_config, load_arms, markdown_table, run_ablation
from tests.conftest import REPO_ROOT


def _arms_file(tmp_path: Path, train_dir: Path, arms: str) -> Path:
    path = tmp_path / "arms.py"
    path.write_text(
        "from fcanet_core.train import TrainConfig\n"
        f"BASE = TrainConfig(arch='lite0', train_dirs=({str(train_dir)!r},), pretrained=False, batch_size=2,\n"
        "                   robot_rounds=1, warmup_steps=1, lr=0.001).replace(crop=64, short_side=72)\n"
        f"ARMS = {arms}\n")
    return path


def test_arms_train_for_the_same_budget_and_are_scored(four_images: Path, tmp_path: Path) -> None:
    arms = _arms_file(tmp_path, four_images, "{'base': {}, 'no robot rounds': {'robot_rounds': 0}}")
    run = ArmRun(init="default", budget_s=3.0, threads=1, dataset=str(four_images), max_clicks=3)
    report = run_ablation(arms, run, tmp_path / "runs", parallel=2)
    assert list(report["arms"]) == ["base", "no robot rounds"]
    for result in report["arms"].values():
        assert result["steps"] >= 1 and result["images"] == 2 * result["steps"]
        assert 2.5 <= result["train_s"] < 30
        assert 1.0 <= result["noc90"] <= 3.0 and 0.0 <= result["miou_1"] <= 1.0 and result["eval_n"] == 4
    assert "| no robot rounds |" in markdown_table(report)

    # A finished arm is not run again: its result comes back unchanged and nothing is appended to its log.
    log = tmp_path / "runs" / "base" / "log.txt"
    size = log.stat().st_size
    again = run_ablation(arms, run, tmp_path / "runs", parallel=1)
    assert again["arms"] == report["arms"] and log.stat().st_size == size


def test_arm_config_fixes_the_budget_and_turns_in_run_evaluation_off(four_images: Path, tmp_path: Path) -> None:
    base, arms = load_arms(_arms_file(tmp_path, four_images, "{'lr': {'lr': 0.05}}"))
    config = arm_config(base, arms["lr"], ArmRun("default", 60.0, 1, str(four_images), 5))
    assert config.lr == 0.05 and config.time_budget_s == 60.0 and config.num_threads == 1
    assert config.eval_dir is None and config.max_steps > 10**6


def test_unknown_override_and_failing_arm_are_reported(four_images: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown config fields"):
        load_arms(_arms_file(tmp_path, four_images, "{'x': {'learning_rate': 1}}"))
    missing = _arms_file(tmp_path, tmp_path / "no_such_folder", "{'broken': {}}")
    with pytest.raises(RuntimeError, match="fcanet_core.train exited"):
        run_ablation(missing, ArmRun("default", 1.0, 1, str(four_images), 2), tmp_path / "runs")


def test_cli_prints_the_table_and_writes_json(four_images: Path, tmp_path: Path) -> None:
    arms = _arms_file(tmp_path, four_images, "{'only': {}}")
    out = tmp_path / "ablations.json"
    done = subprocess.run([sys.executable, "-m", "fcanet_core.ablate", "--arms", str(arms), "--budget", "2",
                           "--dataset", str(four_images), "--max-clicks", "2", "--out", str(tmp_path / "runs"),
                           "--json", str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "| only |" in done.stdout and json.loads(out.read_text())["arms"]["only"]["max_clicks"] == 2


@pytest.mark.parametrize("arms_file", ["ablations.py", "ablation_data_parallel.py"])
def test_shipped_arms_files_load_and_never_train_on_evaluation_data(arms_file: str) -> None:
    base, arms = load_arms(REPO_ROOT / "configs" / arms_file)
    for overrides in arms.values():
        names = {Path(d).name for d in base.replace(**overrides).train_dirs}
        assert names <= {"ecssd", "coco", "duts"}, names
