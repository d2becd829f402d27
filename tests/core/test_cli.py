"""The command-line convention: exit statuses, JSON reports, machine description, timings, free port."""
from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest

from fcanet_core.cli import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, free_port, machine_info, run_action, run_report,
                             timing_summary, write_json)

LOGGER = logging.getLogger("test.cli")


def _raise(exc: Exception):
    def action():
        raise exc
    return action


def test_run_action_prints_the_result_and_maps_errors_to_the_exit_status(capsys, caplog) -> None:
    assert run_action(lambda: Path("runs/model.pt"), LOGGER) == EXIT_OK
    assert capsys.readouterr().out == "runs/model.pt\n"
    assert run_action(_raise(ValueError("bad --size")), LOGGER) == EXIT_BAD_INPUT
    assert run_action(_raise(FileNotFoundError("no such checkpoint")), LOGGER) == EXIT_BAD_INPUT
    assert run_action(_raise(RuntimeError("the run diverged")), LOGGER) == EXIT_FAILED
    assert capsys.readouterr().out == ""
    assert [r.getMessage() for r in caplog.records] == ["bad --size", "no such checkpoint", "the run diverged"]
    with pytest.raises(KeyError):  # a programming error is not hidden behind an exit status
        run_action(_raise(KeyError("x")), LOGGER)


def test_run_report_prints_and_writes_the_report(tmp_path: Path, capsys) -> None:
    out = tmp_path / "deep" / "report.json"
    assert run_report(lambda: {"errors": 0, "ms": 1.5}, out, LOGGER) == EXIT_OK
    assert json.loads(out.read_text()) == {"errors": 0, "ms": 1.5} == json.loads(capsys.readouterr().out)
    assert run_report(lambda: {"errors": 2}, None, LOGGER, failed=lambda r: r["errors"] > 0) == EXIT_FAILED
    assert json.loads(capsys.readouterr().out) == {"errors": 2}  # a failed report is still printed
    assert run_report(_raise(ValueError("unknown variant")), out, LOGGER) == EXIT_BAD_INPUT
    assert capsys.readouterr().out == "" and json.loads(out.read_text())["ms"] == 1.5  # nothing overwritten


def test_write_json_creates_the_folder(tmp_path: Path) -> None:
    write_json({"a": [1, 2]}, tmp_path / "x" / "y.json")
    assert (tmp_path / "x" / "y.json").read_text() == '{\n  "a": [\n    1,\n    2\n  ]\n}\n'


def test_timing_summary_in_seconds_and_milliseconds() -> None:
    seconds = [0.001 * v for v in range(1, 11)]  # 1..10 ms
    summary = timing_summary(seconds)
    assert summary["n"] == 10 and summary["mean"] == pytest.approx(0.0055)
    assert summary["median"] == pytest.approx(0.0055)
    assert summary["p90"] == pytest.approx(0.0091) and summary["p95"] == pytest.approx(0.00955)
    assert summary["max"] == pytest.approx(0.010)
    assert timing_summary(seconds, in_ms=True) == {"n": 10, "mean": 5.5, "median": 5.5, "p90": 9.1, "p95": 9.55,
                                                   "max": 10.0}
    assert timing_summary([]) == {"n": 0, "mean": 0.0, "median": 0.0, "p90": 0.0, "p95": 0.0, "max": 0.0}


def test_machine_info_names_the_cpu_and_the_load() -> None:
    info = machine_info()
    assert set(info) == {"cpu_model", "cores", "cpu_capability", "native_bf16", "platform", "python", "torch",
                         "load_average_1min"}
    assert info["cores"] >= 1 and isinstance(info["native_bf16"], bool) and info["cpu_model"]
    json.dumps(info)  # goes into JSON reports as it is


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        assert sock.getsockname()[1] == port
