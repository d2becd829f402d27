"""The training-throughput benchmark: the real step under several options, JSON out."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fcanet_core.train import TrainConfig
from fcanet_core.training.bench import run_train_bench
from tests.conftest import REPO_ROOT


def _config(folder: Path) -> TrainConfig:
    return TrainConfig.from_mapping(dict(arch="lite0", train_dirs=(str(folder),), pretrained=False, crop=64,
                                         short_side=72, batch_size=2, robot_rounds=1, num_threads=1))


def test_variants_run_the_same_steps_and_report_speedups(four_images: Path) -> None:
    report = run_train_bench(_config(four_images), ["baseline_fp32_nchw", "channels_last"], steps=2, warmup=1)
    base, cl = report["variants"]["baseline_fp32_nchw"], report["variants"]["channels_last"]
    assert base["speedup"] == 1.0 and cl["speedup"] == pytest.approx(cl["images_per_s"] / base["images_per_s"])
    for variant in (base, cl):
        phases = variant["seconds_per_step"]
        assert phases["total"] == pytest.approx(phases["data"] + phases["robot"] + phases["step"], rel=1e-6)
        assert variant["images_per_s"] == pytest.approx(2 / phases["total"], rel=1e-6)
    # Same samples, views, clicks and initial weights: only the memory layout differs.
    assert cl["mean_loss"] == pytest.approx(base["mean_loss"], rel=0.05)
    assert not base["options"]["channels_last"] and cl["options"]["channels_last"]


def test_two_processes_share_each_batch(four_images: Path) -> None:
    config = _config(four_images).replace(batch_size=4, num_threads=2)
    report = run_train_bench(config, ["default", "default_2_processes"], steps=2, warmup=1)
    one, two = report["variants"]["default"], report["variants"]["default_2_processes"]
    assert (one["processes"], two["processes"]) == (1, 2) and one["options"] == two["options"]
    assert two["images_per_s"] == pytest.approx(4 / two["seconds_per_step"]["total"], rel=1e-6)
    assert 0 < two["mean_loss"] < 10


def test_unknown_variant_is_refused(four_images: Path) -> None:
    with pytest.raises(ValueError, match="unknown variants"):
        run_train_bench(_config(four_images), ["fastest"], steps=1, warmup=0)


def test_cli_writes_json(four_images: Path, tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(f"arch: lite0\ntrain_dirs: [{four_images}]\npretrained: false\ncrop: 64\n"
                      "short_side: 72\nbatch_size: 2\nrobot_rounds: 1\n")
    out = tmp_path / "train_bench.json"
    subprocess.run([sys.executable, "-m", "fcanet_core.bench", "--train", "--config", str(config), "--steps", "1",
                    "--warmup", "0", "--threads", "1", "--variants", "baseline_fp32_nchw,channels_last_bf16_robot",
                    "--json", str(out)], cwd=REPO_ROOT, check=True, capture_output=True, timeout=300)
    report = json.loads(out.read_text())
    assert report["mode"] == "train" and report["batch_size"] == 2 and report["crop"] == 64
    assert list(report["variants"]) == ["baseline_fp32_nchw", "channels_last_bf16_robot"]
    assert report["machine"]["cores"] >= 1
