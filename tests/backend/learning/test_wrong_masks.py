"""Candidates fine-tuned from the bundled model on wrong masks are rejected by the gate.

A project's held-out examples carry the same wrong masks as its training examples, so the project
comparison cannot see the damage: the guard set of the bundled model's own domain does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from backend import learning
from backend.storage.registry import DEFAULT_NAME, ModelRegistry
from tests.support.learning import PROJECT, put_examples

#: The bundled model, a few strong steps on small crops, two robot clicks per example.
RECIPE = {"FCANET_CHECKPOINT": "default", "FINETUNE_STEPS": "12", "FINETUNE_LR": "0.02", "FINETUNE_BATCH_SIZE": "4",
          "FINETUNE_CROP": "64", "EVAL_MAX_CLICKS": "2", "GATE_CLICKS": "2", "GATE_MARGIN": "0.01",
          "GUARD_MARGIN": "0.02"}


def inverted(mask: np.ndarray) -> np.ndarray:
    """Object and background swapped."""
    return (1 - mask).astype(np.uint8)


def shifted(mask: np.ndarray) -> np.ndarray:
    """The mask moved by a third of the image's width (wrapping around)."""
    return np.roll(mask, mask.shape[1] // 3, axis=1)


@pytest.mark.slow
@pytest.mark.parametrize("corrupt", [inverted, shifted], ids=["inverted", "shifted"])
def test_a_candidate_trained_on_wrong_masks_is_rejected(
        make_settings: Callable, env: dict, horses: list, corrupt: Callable) -> None:
    settings = make_settings(**{**env, **RECIPE}, REDIS_URL=None)
    put_examples(Path(env["MODEL_DIR"]), [(image, corrupt(mask)) for image, mask in horses], range(1, len(horses) + 1))
    summary = learning.fine_tune(PROJECT, "manual", settings)
    gate = summary["gate"]
    assert summary["status"] == "rejected", gate["why"]
    assert gate["guard"]["gain"] < -settings.learning.guard_margin and gate["why"].startswith("forgets")
    registry = ModelRegistry(env["MODEL_DIR"], "default")
    assert registry.current().name == DEFAULT_NAME
    assert registry.metadata(summary["version"])["metrics"]["gate"]["promote"] is False
