"""CPU data parallelism: real gloo collectives between spawned processes, and training with two processes."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fcanet_core.train import TrainConfig, read_train_state, train
from fcanet_core.train_parallel import (all_gather, all_sum, average_buffers, average_gradients, check_same_weights,
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
    with pytest.raises(RuntimeError):
        run_data_parallel(2, _seeded_collectives, (1,))
    with pytest.raises(RuntimeError, match="different weights"):
        run_data_parallel(2, _different_weights, ())


def _config(data: Path, **changes) -> TrainConfig:
    base = {"train_dirs": (str(data),), "pretrained": True, "crop": 64, "short_side": 72, "batch_size": 4,
            "max_steps": 6, "lr": 0.01, "itis_start": 2, "robot_rounds": 2, "checkpoint_every": 2, "log_every": 1,
            "num_threads": 2, "seed": 5, "processes": 2}
    return TrainConfig(**{**base, **changes})


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


@pytest.mark.slow
def test_sigterm_saves_and_stops_every_process(four_images: Path, tmp_path: Path) -> None:
    config_file = tmp_path / "dp.yaml"
    config_file.write_text(f"train_dirs: [{four_images}]\ncrop: 64\nshort_side: 72\nbatch_size: 4\nmax_steps: 100000\n"
                           "checkpoint_every: 100000\nlog_every: 1\nnum_threads: 2\nprocesses: 2\n")
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "fcanet_core.train", "--config", str(config_file), "--out", str(run)],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (run / "metrics.jsonl").is_file() or len((run / "metrics.jsonl").read_text().splitlines()) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    state = read_train_state(run / "last.pt")
    assert state["step"] >= 2 and len(state["ranks"]) == 2
    logged = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1] == state["step"]  # the saved state is the last finished step, as logged
