"""``python -m backend evaluate``: the served version measured with the robot user, as served."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fcanet_core
from fcanet_core.data.datasets import load_samples
from fcanet_core.evaluate import evaluate

REPO_ROOT = Path(__file__).resolve().parents[3]


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    environ.update({"MODEL_DIR": str(tmp_path / "model_data"), "FCANET_RUNTIME": "torch", **env})
    return subprocess.run([sys.executable, "-m", "backend", "evaluate", *args], cwd=REPO_ROOT, env=environ,
                          capture_output=True, text=True, timeout=540)


@pytest.mark.slow
def test_served_version_is_measured_with_the_served_options(tmp_path: Path, shared_dir: Path) -> None:
    dataset = shared_dir / "data" / "grabcut"
    out, plot = tmp_path / "report.json", tmp_path / "curve.png"
    proc = _run(tmp_path, "--dataset", str(dataset), "--every", "25", "--max-clicks", "2", "--json", str(out),
                "--plot", str(plot), FCANET_FLIP_AVERAGE="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert json.loads(proc.stdout.strip().splitlines()[-1])["n"] == 2
    assert report["model_version"] == "fcanet-lite0-default" and report["runtime"]["runtime"] == "torch"
    assert report["predictor"]["flip_average"] is True and report["predictor"]["sis"] is True
    samples = load_samples(dataset)[::25]
    assert [i["name"] for i in report["instances"]] == [s.name for s in samples]
    predictor = fcanet_core.Predictor(fcanet_core.load_model("default"), sis=True, flip_average=True)
    expected = evaluate(predictor, samples, max_clicks=2)
    np.testing.assert_allclose([i["ious"] for i in report["instances"]],
                               [inst.ious for inst in expected.instances], atol=1e-6)
    assert plot.stat().st_size > 1000


def test_an_unreadable_dataset_is_a_usage_error(tmp_path: Path) -> None:
    proc = _run(tmp_path, "--dataset", str(tmp_path / "nowhere"))
    assert proc.returncode == 2 and "dataset folder not found" in proc.stderr
