"""Fixtures of the learning tests: small real horse images and the fast recipe.

The model is the tiny random-weights ``lite0``; the images are real horse photos shrunk to 96 px,
so a fine-tuning takes seconds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcanet_core.data.datasets import load_samples
from tests.support.learning import FAST


@pytest.fixture(scope="module")
def horses(shared_dir: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Six real horse images with their masks, shrunk to 96 px wide."""
    pairs = []
    for sample in load_samples(shared_dir / "data" / "train" / "horses", limit=6):
        image, gt = sample.load()
        size = (96, round(96 * image.shape[0] / image.shape[1]))
        small = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
        mask = np.asarray(Image.fromarray((gt == 1).astype(np.uint8)).resize(size, Image.NEAREST))
        pairs.append((small, mask))
    return pairs


@pytest.fixture
def env(backend_env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The backend environment with a MODEL_DIR of this test and the fast recipe (also in this process)."""
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)
    return {**backend_env, **FAST, "MODEL_DIR": str(tmp_path / "model_data")}
