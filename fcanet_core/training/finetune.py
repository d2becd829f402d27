"""Fine-tune from a checkpoint and return the model; rebuild a model from a training state.

:func:`fine_tune` serves the backend's learning hook; :func:`model_from_state` serves it and
:mod:`fcanet_core.export_model`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..modeling import FCANet, build_model
from ..modeling.checkpoint import resolve_checkpoint
from .config import TrainConfig, run_progress
from .state import read_train_state
from .trainer import train


@dataclass
class FineTuned:
    """A fine-tuned model (eval mode, on CPU) with the steps it took and its seconds of training steps."""

    model: FCANet
    steps: int
    train_seconds: float


def model_from_state(state: dict[str, Any]) -> FCANet:
    """The model of a training state (:func:`fcanet_core.train.read_train_state`), in eval mode."""
    model = build_model(state["arch"])
    model.load_state_dict(state["model"])
    return model.eval()


def fine_tune(config: TrainConfig, out_dir: str | Path, checkpoint: str | Path, device: str = "cpu") -> FineTuned:
    """Train ``config`` starting from the weights of ``checkpoint`` and return the model.

    Args:
        config: the run (``pretrained=False``: the weights come from ``checkpoint``).
        out_dir: the run folder (``last.pt``, ``metrics.jsonl``).
        checkpoint: any checkpoint :func:`fcanet_core.load_model` reads (``"default"`` included).
        device: where the steps run.

    Raises:
        RuntimeError: the run stopped before its end (a signal), so there is no finished model.
    """
    state = read_train_state(train(config, out_dir, device=device, init=resolve_checkpoint(checkpoint),
                                   progress=False))
    if run_progress(state["step"], state["elapsed_s"], config) < 1.0:
        raise RuntimeError(f"fine-tuning stopped at step {state['step']} of {config.max_steps} (signal)")
    return FineTuned(model_from_state(state), state["step"], state["elapsed_s"])
