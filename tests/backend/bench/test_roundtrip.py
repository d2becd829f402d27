"""``python -m backend.roundtrip_bench``: phases from the backend's JSON log lines, and a tiny real run
through Label Studio and ``scripts/serve.sh``."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.bench.harness import REPO_ROOT
from backend.bench.roundtrip import log_phases, phases
from backend.common.logs import JsonFormatter


def _write_log(path: Path, records: list[tuple[str, dict]]) -> None:
    logger = logging.getLogger("roundtrip-test")
    handler = logging.FileHandler(path)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for message, extra in records:
            logger.info(message, extra=extra)
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_phases_split_each_click_by_the_backend_log(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    log.write_text("[serve.sh] a plain line from the script\n")
    _write_log(log, [("request", {"route": "/health", "duration_ms": 1.0}),
                     ("segmented", {"duration_ms": 30.0, "fetch_ms": 5.0, "predict_ms": 20.0, "encode_ms": 5.0}),
                     ("request", {"route": "/predict", "duration_ms": 40.0}),
                     ("segmented", {"duration_ms": 20.0, "fetch_ms": 0.5, "predict_ms": 18.0, "encode_ms": 1.5}),
                     ("request", {"route": "/predict", "duration_ms": 26.0})])
    predict_ms, jobs = log_phases(log)
    assert predict_ms == [40.0, 26.0] and len(jobs) == 2
    split = phases([0.050, 0.030], predict_ms, jobs)
    assert split["label_studio"]["max"] == pytest.approx(10.0)          # 50 - 40 and 30 - 26
    assert split["backend_web"]["mean"] == pytest.approx(8.0)           # 40 - 30 and 26 - 20
    assert split["predict"]["median"] == pytest.approx(19.0)
    assert phases([0.05], predict_ms, jobs) == {"unmatched": {"clicks": 1, "predict_requests": 2, "jobs": 2}}


@pytest.mark.e2e
@pytest.mark.slow
def test_roundtrip_bench_clicks_through_label_studio_and_reports_phases(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "backend.roundtrip_bench", "--limit-images", "1", "--clicks", "2",
                           "--log-dir", str(tmp_path / "logs"), "--json", str(out)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=900, check=False, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["clicks"] == 2 and report["command"] == "bash scripts/serve.sh"
    assert report["round_trip_ms"]["median"] > 0
    assert set(report["phases_ms"]) == {"label_studio", "backend_web", "job", "image_fetch", "predict", "encode"}
    runtimes = report["runtimes"].values()
    assert "openvino" in {s["runtime"] for s in runtimes} and not any(s["fallback_reason"] for s in runtimes)
    assert report["final_iou_mean"] > 0.5
