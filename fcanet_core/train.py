"""Training and fine-tuning of FCA-Net with simulated and iterative-training clicks.

CLI::

    python -m fcanet_core.train --config configs/lite0_cpu.py [--device cpu|cuda] [--resume]
        [--init CHECKPOINT] [--out DIR] [--max-steps N] [--time-budget SECONDS]

The run folder holds ``last.pt`` (the full training state: model, optimizer, LR schedule, step,
data order, ITIS memory and RNG states, written atomically every ``checkpoint_every`` steps and at
the end) and ``metrics.jsonl`` (the learning curve: step, loss, lr, images/s and, when evaluated,
NoC@85/90 on the evaluation folder). ``--resume`` continues a killed run exactly where its last
checkpoint left it. Export a model for use with :mod:`fcanet_core.export_model`. With
``processes: N`` in the config the run is data-parallel over N single-threaded CPU processes
(:mod:`fcanet_core.training.parallel`), each with 1/N of every batch and its own share of the samples.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .cli import run_action
from .training.config import TrainConfig, load_config, poly_factor, run_progress
from .training.state import METRICS_FILE, STATE_FILE, STATE_FORMAT, read_train_state
from .training.trainer import train

__all__ = ["METRICS_FILE", "STATE_FILE", "STATE_FORMAT", "TrainConfig", "load_config", "main", "poly_factor",
           "read_train_state", "run_progress", "train"]

logger = logging.getLogger(__name__)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fcanet_core.train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="Python (defining CONFIG) or YAML config file")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--init", default=None, help="start from this checkpoint's weights (fine-tuning)")
    parser.add_argument("--out", default="runs/train", help="run folder (default runs/train)")
    parser.add_argument("--max-steps", type=int, default=None, help="override the config's max_steps")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="override the config's time_budget_s (seconds of training steps)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parse_args(argv)

    def action() -> Path:
        config = load_config(args.config)
        if args.max_steps is not None:
            config = config.replace(max_steps=args.max_steps)
        if args.time_budget is not None:
            config = config.replace(time_budget_s=args.time_budget)
        return train(config, args.out, device=args.device, resume=args.resume, init=args.init)

    return run_action(action, logger)


if __name__ == "__main__":
    sys.exit(main())
