"""CPU data parallelism: real gloo collectives between spawned processes, and training with two processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fcanet_core.train import TrainConfig, read_train_state, train
from fcanet_core.training.parallel import (all_gather, all_sum, average_buffers, average_gradients, check_same_weights,
                                           run_data_parallel)
from tests.conftest import REPO_ROOT


def _collectives(rank: int, world: int, fail_rank: int) -> dict[str, object]:
    """Runs in every process: gradients and buffers that differ per rank, then their averages."""
    layer = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    for param in layer.parameters():
        param.grad = torch.full_like(param, float(rank + 1))
    layer[1].running_mean.fill_(10.0 * rank)
    average_gradients(layer.parameters(), world)
    average_buffers(layer, world)
    if rank == fail_rank:
        raise RuntimeError("this rank fails on purpose")
    check_same_weights(layer, world)  # every rank built the same layer? (seeded below)
    return {"grads": [p.grad.tolist() for p in layer.parameters()], "mean": layer[1].running_mean.tolist(),
            "sum": all_sum([1.0, rank], world), "gathered": all_gather(f"rank{rank}", world)}


def _seeded_collectives(rank: int, world: int, fail_rank: int) -> dict[str, object]:
    torch.manual_seed(0)
    return _collectives(rank, world, fail_rank)


def _different_weights(rank: int, world: int) -> None:
    torch.manual_seed(rank)
    check_same_weights(torch.nn.Linear(2, 2), world)


def test_gradients_buffers_and_values_are_averaged_across_processes() -> None:
    result = run_data_parallel(2, _seeded_collectives, (-1,))
    assert all(value == 1.5 for grad in result["grads"] for value in torch.tensor(grad).flatten().tolist())
    assert result["mean"] == [5.0, 5.0]
    assert result["sum"] == [2.0, 1.0] and result["gathered"] == ["rank0", "rank1"]


def test_a_failing_process_fails_the_run() -> None:
    with pytest.raises(RuntimeError, match=r"ended early.*train-rank-1"):
        run_data_parallel(2, _seeded_collectives, (1,))
    with pytest.raises(RuntimeError, match="different weights"):
        run_data_parallel(2, _different_weights, ())


def _config(data: Path, **changes) -> TrainConfig:
    base = {"train_dirs": (str(data),), "pretrained": True, "crop": 64, "short_side": 72, "batch_size": 4,
            "max_steps": 6, "lr": 0.01, "itis_start": 2, "robot_rounds": 2, "checkpoint_every": 2, "log_every": 1,
            "num_threads": 2, "seed": 5, "processes": 2}
    return TrainConfig.from_mapping({**base, **changes})


@pytest.mark.slow
def test_two_process_training_resumes_exactly(four_images: Path, tmp_path: Path) -> None:
    config = _config(four_images)
    whole = read_train_state(train(config, tmp_path / "whole", progress=False))
    assert whole["step"] == 6 and len(whole["ranks"]) == 2
    assert whole["ranks"][0]["numpy"] != whole["ranks"][1]["numpy"]  # each process draws its own views
    stopped = read_train_state(train(config, tmp_path / "split", stop_after=3, progress=False))
    assert stopped["step"] == 3
    resumed = read_train_state(train(config, tmp_path / "split", resume=True, progress=False))
    for mine, theirs in zip(resumed["ranks"], whole["ranks"], strict=True):  # generators, order, ITIS memory
        assert torch.equal(mine.pop("torch"), theirs.pop("torch")) and mine == theirs
    for key, value in whole["model"].items():
        assert torch.allclose(resumed["model"][key].float(), value.float(), atol=1e-5), key
    losses = [json.loads(line)["loss"] for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 6 and all(loss > 0 for loss in losses)
    with pytest.raises(ValueError, match="2 process"):
        train(config.replace(processes=1), tmp_path / "split", resume=True, progress=False)


def test_processes_must_divide_the_batch(four_images: Path) -> None:
    with pytest.raises(ValueError, match="divide batch_size"):
        _config(four_images, batch_size=3)


def _start_run(four_images: Path, tmp_path: Path, checkpoint_every: int, resume: bool = False) -> subprocess.Popen:
    """``python -m fcanet_core.train`` with two processes on ``tmp_path/run``, as a user starts it; its output
    goes to ``tmp_path/train.log`` (read it with :func:`_output`)."""
    config_file = tmp_path / "dp.yaml"
    config_file.write_text(f"train_dirs: [{four_images}]\ncrop: 64\nshort_side: 72\nbatch_size: 4\nmax_steps: 100000\n"
                           f"checkpoint_every: {checkpoint_every}\nlog_every: 1\nnum_threads: 2\nprocesses: 2\n")
    command = [sys.executable, "-m", "fcanet_core.train", "--config", str(config_file), "--out", str(tmp_path / "run")]
    with open(tmp_path / "train.log", "w") as log:
        return subprocess.Popen(command + (["--resume"] if resume else []), cwd=REPO_ROOT, stdout=log,
                                stderr=subprocess.STDOUT)


def _output(tmp_path: Path) -> str:
    return (tmp_path / "train.log").read_text(errors="replace")


def _wait_for_steps(proc: subprocess.Popen, tmp_path: Path, steps: int) -> None:
    metrics, deadline = tmp_path / "run" / "metrics.jsonl", time.monotonic() + 240
    while not metrics.is_file() or len(metrics.read_text().splitlines()) < steps:
        assert proc.poll() is None and time.monotonic() < deadline, _output(tmp_path)[-2000:]
        time.sleep(0.2)


def _stop(proc: subprocess.Popen, signum: int, pid: int | None = None) -> int:
    """Send ``signum`` to ``pid`` (default: the run) and return the run's exit status."""
    try:
        os.kill(pid or proc.pid, signum)
        return proc.wait(timeout=120)
    finally:
        proc.kill()


def _rank_1_pid(parent: int) -> int:
    """The spawned training process among ``parent``'s children (not multiprocessing's resource tracker)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields, cmdline = stat.read_text().rsplit(")", 1)[1].split(), (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            return int(stat.parent.name)
    raise AssertionError("no rank-1 process found")


@pytest.mark.slow
def test_sigterm_saves_and_stops_every_process(four_images: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _start_run(four_images, tmp_path, checkpoint_every=100000)
    _wait_for_steps(proc, tmp_path, 2)
    assert _stop(proc, signal.SIGTERM) == 0, _output(tmp_path)[-2000:]
    state = read_train_state(run / "last.pt")
    assert state["step"] >= 2 and len(state["ranks"]) == 2
    logged = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1] == state["step"]  # the saved state is the last finished step, as logged


@pytest.mark.slow
def test_a_killed_process_ends_the_run_with_its_last_checkpoint_resumable(four_images: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _start_run(four_images, tmp_path, checkpoint_every=2)
    _wait_for_steps(proc, tmp_path, 5)
    assert _stop(proc, signal.SIGKILL, _rank_1_pid(proc.pid)) != 0
    output = _output(tmp_path)
    assert "ended early" in output and "train-rank-1" in output, output[-2000:]
    saved = read_train_state(run / "last.pt")  # the last checkpoint, intact
    assert saved["step"] >= 4 and saved["step"] % 2 == 0
    resumed = _start_run(four_images, tmp_path, checkpoint_every=2, resume=True)
    _wait_for_steps(resumed, tmp_path, len((run / "metrics.jsonl").read_text().splitlines()) + 2)
    assert _stop(resumed, signal.SIGTERM) == 0, _output(tmp_path)[-2000:]
    assert f"resumed {run / 'last.pt'} at step {saved['step']}" in _output(tmp_path)
    assert read_train_state(run / "last.pt")["step"] > saved["step"]
