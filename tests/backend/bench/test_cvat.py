"""``python -m backend.cvat_bench``: a tiny real run on GrabCut frames and its report."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from backend.bench.cvat import parse_sizes
from backend.bench.harness import REPO_ROOT
from fcanet_core.cli import machine_info

FRAME_KEYS = {"size", "image_bytes", "response_bytes", "decode_ms", "predict_ms", "encode_ms", "naive_encode_ms",
              "call_ms", "call_cached_ms", "encode_to_predict"}


def test_tiny_run_writes_the_report(backend_env: dict[str, str], shared_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cvat_bench.json"
    proc = subprocess.run([sys.executable, "-m", "backend.cvat_bench", "--sizes", "96x64,160x120", "--repeat", "2",
                           "--images", str(shared_dir / "data" / "grabcut"), "--json", str(out)],
                          cwd=REPO_ROOT, env=backend_env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report == json.loads(proc.stdout)
    assert set(report) == {"model_version", "device", "torch_threads", "repeat", "machine", "frames"}
    assert (report["model_version"], report["device"], report["repeat"]) == ("tiny-lite0", "cpu", 2)
    assert set(report["machine"]) == set(machine_info())
    assert [frame["size"] for frame in report["frames"]] == ["96x64", "160x120"]
    for frame, (width, height) in zip(report["frames"], [(96, 64), (160, 120)]):
        assert set(frame) == FRAME_KEYS
        assert frame["image_bytes"] > 0
        assert 2 * width * height <= frame["response_bytes"] <= 4 * width * height + 2 * height + 20
        assert all(frame[key] > 0 for key in FRAME_KEYS - {"size", "image_bytes", "response_bytes"})


def test_sizes_are_parsed_and_checked() -> None:
    assert parse_sizes("683x512, 1920X1080") == [(683, 512), (1920, 1080)]
    for bad in ("683", "0x5", "ax5"):
        with pytest.raises(ValueError):
            parse_sizes(bad)
