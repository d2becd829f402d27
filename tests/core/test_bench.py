"""The speed benchmark CLI: runs the predictor on a synthetic image and reports JSON."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_bench_reports_seconds_per_click(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, "-m", "fcanet_core.bench", "--arch", "lite0", "--size", "48x64",
                    "--clicks", "2", "--repeats", "1", "--threads", "1", "--json", str(out)],
                   cwd=REPO_ROOT, check=True, capture_output=True, timeout=300)
    report = json.loads(out.read_text())
    assert report["arch"] == "lite0" and report["device"] == "cpu"
    assert report["input_size"] == [48, 64]
    assert report["network_input_size"] == [352, 469]  # lite0's short side 352, width truncated
    assert report["seconds_per_click"]["n"] == 2
    assert 0 < report["seconds_per_click"]["median"] <= report["seconds_per_click"]["p90"] + 1e-9
    assert report["machine"]["cores"] >= 1


def test_bench_puts_runtimes_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "runtimes.json"
    subprocess.run([sys.executable, "-m", "fcanet_core.bench", "--arch", "lite0", "--size", "48x64",
                    "--clicks", "1", "--repeats", "1", "--threads", "1", "--runtimes", "torch-fp32,ort-fp32,openvino-fp32",
                    "--json", str(out)], cwd=REPO_ROOT, check=True, capture_output=True, timeout=600)
    report = json.loads(out.read_text())
    assert set(report["runtimes"]) == {"torch-fp32", "ort-fp32", "openvino-fp32"} and report["machine"]["cores"] >= 1
    for name, result in report["runtimes"].items():
        assert result["lossy"] is False and result["seconds_per_click"]["n"] == 1, name
        assert "overhead_seconds_per_click" in result, name
        assert result["max_rel_logit_diff"] <= 1e-3 and result["mask_iou_vs_torch_fp32"] >= 0.999, name
    assert report["runtimes"]["torch-fp32"]["max_rel_logit_diff"] == 0.0


def test_bench_rejects_an_unknown_runtime() -> None:
    done = subprocess.run([sys.executable, "-m", "fcanet_core.bench", "--runtimes", "tensorrt"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "unknown runtime(s) ['tensorrt']" in done.stderr
