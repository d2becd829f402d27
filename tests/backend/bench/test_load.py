"""``python -m backend.bench``: a tiny real run (web app, worker, Redis, HTTP images) and its report."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.bench.harness import REPO_ROOT
from fcanet_core.cli import machine_info

STATS = {"n", "mean", "median", "p90", "p95", "max"}
REPORT_KEYS = {"annotators", "clicks_per_annotator", "requests", "errors", "error_samples", "wall_s",
               "throughput_rps", "latency_ms", "final_iou_mean", "overhead", "model_version", "target",
               "torch_threads", "machine", "logs"}


def _bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend.bench", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _assert_stats(stats: dict) -> None:
    assert set(stats) == STATS
    assert isinstance(stats["n"], int) and stats["n"] >= 1
    assert all(isinstance(v, float) and v >= 0 for k, v in stats.items() if k != "n")
    assert stats["median"] <= stats["p90"] <= stats["p95"] <= stats["max"]


@pytest.mark.slow
def test_tiny_run_writes_the_report(shared_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    redis_server = os.environ.get("FCANET_TEST_REDIS", "redis://127.0.0.1:6379")
    proc = _bench("--annotators", "2", "--clicks", "2", "--limit-images", "2", "--torch-threads", "1",
                  "--redis-url", redis_server,
                  "--images", str(shared_dir / "data" / "grabcut"), "--log-dir", str(tmp_path / "logs"),
                  "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report == json.loads(proc.stdout)
    assert set(report) == REPORT_KEYS

    assert (report["annotators"], report["clicks_per_annotator"], report["requests"]) == (2, 2, 4)
    assert report["errors"] == 0 and report["error_samples"] == []
    _assert_stats(report["latency_ms"])
    assert report["wall_s"] > 0 and report["throughput_rps"] > 0
    assert 0.0 <= report["final_iou_mean"] <= 1.0
    overhead = report["overhead"]
    assert (overhead["requests"], overhead["errors"]) == (4, 0)
    _assert_stats(overhead["queued_ms"])
    _assert_stats(overhead["inprocess_ms"])
    assert set(overhead["queue_overhead_ms"]) == STATS
    _assert_stats(overhead["transport_ms"])
    assert isinstance(report["model_version"], str) and report["model_version"]
    assert (report["target"], report["torch_threads"]) == ("spawned", 1)
    assert set(report["machine"]) == set(machine_info())


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    proc = _bench("--annotators", "0", timeout=60)
    assert proc.returncode == 2 and "--annotators" in proc.stderr
    proc = _bench("--images", str(tmp_path / "missing"), timeout=60)
    assert proc.returncode == 2 and "dataset folder not found" in proc.stderr
