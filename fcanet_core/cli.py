"""What every command of ``fcanet_core`` and ``backend`` shares: one exit-status convention, one JSON
report writer, one description of the machine, one timing summary and a free loopback port.

Exit status: :data:`EXIT_OK` (0) done; :data:`EXIT_FAILED` (1) the work ran and failed (a
``RuntimeError``, or a report its command judges failed); :data:`EXIT_BAD_INPUT` (2) bad input
(``ValueError``, ``OSError``: a missing file, a wrong option), as for argparse's usage errors.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
BAD_INPUT: tuple[type[Exception], ...] = (ValueError, OSError)


def setup_logging() -> None:
    """Log INFO and up to stderr with time, level and logger name (a no-op when logging is set up)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _exit_status(action: Callable[[], Any], logger: logging.Logger) -> tuple[int, Any]:
    """``(status, result)`` of ``action()``: its errors logged and mapped to the module's exit status."""
    try:
        return EXIT_OK, action()
    except BAD_INPUT as exc:
        logger.error("%s", exc)
        return EXIT_BAD_INPUT, None
    except RuntimeError as exc:
        logger.error("%s", exc)
        return EXIT_FAILED, None


def run_action(action: Callable[[], object], logger: logging.Logger) -> int:
    """Run a command's ``action``, print its result (a path, a summary line) and return the exit status."""
    setup_logging()
    status, result = _exit_status(action, logger)
    if status == EXIT_OK:
        sys.stdout.write(f"{result}\n")
    return status


def write_json(report: Any, path: str | Path) -> None:
    """Write ``report`` to ``path`` as indented JSON (its folder created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def write_report(report: dict[str, Any], path: str | Path | None = None) -> None:
    """Print ``report`` as indented JSON on stdout and, when ``path`` is given, write it there too."""
    if path:
        write_json(report, path)
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


def run_report(produce: Callable[[], dict[str, Any]], json_path: Path | None, logger: logging.Logger,
               failed: Callable[[dict[str, Any]], bool] = lambda _: False) -> int:
    """Run a command that produces a JSON report, print it (and write it to ``json_path``).

    Returns:
        The exit status: 0, 1 when it raised ``RuntimeError`` or ``failed(report)``, 2 on bad input.
    """
    setup_logging()
    status, report = _exit_status(produce, logger)
    if status != EXIT_OK:
        return status
    write_report(report, json_path)
    return EXIT_FAILED if failed(report) else EXIT_OK


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info() -> dict[str, object]:
    """What a measurement ran on: CPU model, cores, torch's CPU capability, native bfloat16, platform,
    software versions and the 1-minute load average (other work slows a benchmark down)."""
    import torch

    from .training.step import native_cpu_bf16
    return {"cpu_model": _cpu_model(), "cores": os.cpu_count(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": native_cpu_bf16(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def timing_summary(seconds: Sequence[float], in_ms: bool = False) -> dict[str, float]:
    """Count, mean, median, 90th and 95th percentile and maximum of durations given in seconds; in
    milliseconds rounded to 0.01 with ``in_ms``. All zeros for no durations."""
    if not len(seconds):
        return {"n": 0, "mean": 0.0, "median": 0.0, "p90": 0.0, "p95": 0.0, "max": 0.0}
    values = np.asarray(seconds, dtype=np.float64) * (1000.0 if in_ms else 1.0)
    p50, p90, p95 = np.percentile(values, [50, 90, 95])
    summary = {"mean": values.mean(), "median": p50, "p90": p90, "p95": p95, "max": values.max()}
    return {"n": len(values), **{k: round(float(v), 2) if in_ms else float(v) for k, v in summary.items()}}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a local server or a process group's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
