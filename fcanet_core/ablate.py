"""Recipe ablations at equal CPU time: short training arms from one start, scored on the robot-user protocol.

CLI::

    python -m fcanet_core.ablate --arms configs/ablations.py --init default --budget 480 --threads 1 \\
        --parallel 2 --dataset ../shared/data/grabcut --max-clicks 10 --out RUNS/ablate --json out/ablations.json

The arms file defines ``BASE`` (a :class:`~fcanet_core.train.TrainConfig`) and ``ARMS`` (name → field
overrides). Every arm trains from the same ``--init`` weights for ``--budget`` seconds of training
steps with ``--threads`` torch threads (``--parallel`` arms side by side, one core each), is exported
and evaluated with SIS (as the backend serves it) on ``--dataset`` with ``--max-clicks`` robot clicks.
Each arm runs as its own ``fcanet_core.train`` / ``export_model`` / ``evaluate`` process; an arm whose
result is already in its folder is not run again, so an interrupted ablation continues where it stopped.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import runpy
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .cli import run_action, write_json
from .training.config import TrainConfig, config_keys

logger = logging.getLogger(__name__)

RESULT_FILE = "result.json"


@dataclasses.dataclass(frozen=True)
class ArmRun:
    """How every arm runs (the same for all arms, so they differ only in their overrides)."""

    init: str
    budget_s: float
    threads: int
    dataset: str
    max_clicks: int


def load_arms(path: str | Path) -> tuple[TrainConfig, dict[str, dict[str, Any]]]:
    """``(BASE, ARMS)`` of an arms file; ``ValueError`` for a missing file, name or unknown field."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"arms file not found: {path}")
    namespace = runpy.run_path(str(path))
    base, arms = namespace.get("BASE"), namespace.get("ARMS")
    if not dataclasses.is_dataclass(base) or isinstance(base, type):
        raise ValueError(f"{path} defines no BASE TrainConfig")
    if not isinstance(arms, dict) or not arms:
        raise ValueError(f"{path} defines no ARMS mapping")
    for name, overrides in arms.items():
        unknown = set(overrides) - config_keys()
        if unknown:
            raise ValueError(f"arm {name!r}: unknown config fields {sorted(unknown)}")
    return TrainConfig.from_mapping(dataclasses.asdict(base)), arms


def arm_config(base: TrainConfig, overrides: dict[str, Any], run: ArmRun) -> TrainConfig:
    """The arm's training config: the overrides on ``base``, ending on ``run.budget_s`` with no in-run evaluation."""
    return base.replace(**overrides).replace(time_budget_s=run.budget_s, max_steps=10**7, num_threads=run.threads,
                                             eval_dir=None, eval_every=0, checkpoint_every=10**7)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def run_arm(name: str, config: TrainConfig, run: ArmRun, folder: Path) -> dict[str, Any]:
    """Train, export and evaluate one arm in ``folder`` (skipped when its result is there); its result."""
    result_path = folder / RESULT_FILE
    if result_path.is_file():
        return json.loads(result_path.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "config.json"  # JSON is YAML to load_config, and it writes tuples as lists
    write_json(config.flat(), config_path)
    env = {**os.environ, "OMP_NUM_THREADS": str(run.threads), "OMP_WAIT_POLICY": "PASSIVE"}
    state = folder / "train" / "last.pt"
    if state.is_file():  # an interrupted arm continues its own run
        train_args = ["--resume"]
    else:
        train_args = ["--init", run.init]
    python = [sys.executable, "-m"]
    steps = [
        [*python, "fcanet_core.train", "--config", str(config_path), "--out", str(folder / "train"), *train_args],
        [*python, "fcanet_core.export_model", "--from", str(state), "--to", str(folder / "model.pt"),
         "--name", f"ablation-{_slug(name)}"],
        [*python, "fcanet_core.evaluate", "--checkpoint", str(folder / "model.pt"), "--dataset", run.dataset,
         "--max-clicks", str(run.max_clicks), "--sis", "--device", "cpu", "--json", str(folder / "eval.json")],
    ]
    with open(folder / "log.txt", "a") as log:
        for argv in steps:
            done = subprocess.run(argv, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"arm {name!r}: {argv[2]} exited with {done.returncode} (see {folder / 'log.txt'})")
    result = _summary(name, config, folder)
    write_json(result, result_path)
    return result


def _summary(name: str, config: TrainConfig, folder: Path) -> dict[str, Any]:
    metrics = [json.loads(line) for line in (folder / "train" / "metrics.jsonl").read_text().splitlines()]
    logged = [m for m in metrics if "loss" in m]
    evaluation = json.loads((folder / "eval.json").read_text())
    last = logged[-1]
    return {
        "arm": name,
        "steps": last["step"],
        "images": last["step"] * config.batch_size,
        "train_s": last["elapsed_s"],
        "final_loss": last["loss"],
        "noc85": evaluation["noc85"],
        "noc90": evaluation["noc90"],
        "miou_1": evaluation["miou_curve"][0],
        "miou_last": evaluation["miou_curve"][-1],
        "eval_n": evaluation["n"],
        "max_clicks": evaluation["max_clicks"],
    }


def run_ablation(arms_file: str | Path, run: ArmRun, out: str | Path, parallel: int = 1) -> dict[str, Any]:
    """Run every arm of ``arms_file`` (``parallel`` at a time) and return the report."""
    base, arms = load_arms(arms_file)
    out = Path(out)
    configs = {name: arm_config(base, overrides, run) for name, overrides in arms.items()}
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = {name: pool.submit(run_arm, name, config, run, out / _slug(name)) for name, config in configs.items()}
        results = {name: future.result() for name, future in futures.items()}
    return {
        "arms_file": str(arms_file),
        "init": run.init,
        "budget_s": run.budget_s,
        "threads": run.threads,
        "parallel": parallel,
        "dataset": run.dataset,
        "max_clicks": run.max_clicks,
        "overrides": arms,
        "arms": results,
    }


def markdown_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table, one row per arm."""
    rows = ["| arm | steps | images | NoC@85 | NoC@90 | mIoU@1 | final loss |", "|---|---|---|---|---|---|---|"]
    for r in report["arms"].values():
        rows.append(f"| {r['arm']} | {r['steps']:,} | {r['images']:,} | {r['noc85']:.2f} | {r['noc90']:.2f} | "
                    f"{r['miou_1']:.3f} | {r['final_loss']:.3f} |")
    return "\n".join(rows)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fcanet_core.ablate", description=__doc__.split("\n")[0])
    parser.add_argument("--arms", required=True, help="Python file defining BASE and ARMS")
    parser.add_argument("--init", default="default", help="start of every arm (default: the bundled model)")
    parser.add_argument("--budget", type=float, default=1200.0, help="seconds of training steps per arm")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per arm")
    parser.add_argument("--parallel", type=int, default=1, help="arms run side by side")
    parser.add_argument("--dataset", default="../shared/data/grabcut", help="evaluation folder")
    parser.add_argument("--max-clicks", type=int, default=10, help="robot clicks per instance")
    parser.add_argument("--out", required=True, help="folder of the arms' runs")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parse_args(argv)

    def action() -> str:
        run = ArmRun(args.init, args.budget, args.threads, args.dataset, args.max_clicks)
        report = run_ablation(args.arms, run, args.out, args.parallel)
        if args.json:
            write_json(report, args.json)
        return markdown_table(report)

    return run_action(action, logger)


if __name__ == "__main__":
    sys.exit(main())
