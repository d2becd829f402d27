"""The GPU time-box script, run on the CPU: trains from the bundled model, exports with the lineage."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fcanet_core import load_model
from fcanet_core.export_model import lineage_of
from fcanet_core.train_subset import make_subset
from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_time_box_trains_and_exports_a_model_with_its_lineage(shared_dir: Path, tmp_path: Path) -> None:
    subset = tmp_path / "small"
    make_subset([shared_dir / "data" / "train" / "ecssd"], subset, max_bytes=150_000, short_side=96)
    config = tmp_path / "tiny.yaml"
    config.write_text(f"arch: lite0\ntrain_dirs: [{subset}]\npretrained: false\ncrop: 64\nshort_side: 72\n"
                      "batch_size: 2\nmax_steps: 3\nrobot_rounds: 1\nnum_threads: 1\n")
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "TRAIN_DEVICE": "cpu",
           "TRAIN_CONFIG": str(config), "TRAIN_SUBSET": str(subset), "TRAIN_INIT": str(tmp_path / "none.pt")}
    subprocess.run(["bash", "scripts/device_train.sh", "600"], cwd=REPO_ROOT, env=env, check=True,
                   capture_output=True, timeout=600)
    model = load_model(out / "fcanet_lite0.pt")
    bundled = load_model("default")
    assert model.meta["steps"] == 3 and model.meta["where"] == "CPU"
    parent = lineage_of(bundled.meta)
    assert parent and model.meta["lineage"][:-1] == parent
    assert model.meta["steps_total"] == sum(s["steps"] for s in parent) + 3
    assert (out / "run" / "last.pt").is_file() and (out / "run" / "metrics.jsonl").is_file()


def test_missing_training_copy_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "TRAIN_SUBSET": str(tmp_path / "nope")}
    done = subprocess.run(["bash", "scripts/device_train.sh"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "missing" in done.stderr
