"""The downscaled training copy: byte budget, folder shares, loadable samples with the ignore band kept."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fcanet_core.data.datasets import load_samples
from fcanet_core.train_subset import make_subset


def test_subset_keeps_the_budget_and_the_folders_shares(shared_dir: Path, tmp_path: Path) -> None:
    train = shared_dir / "data" / "train"
    sources = [train / "ecssd", train / "duts"]
    n = make_subset(sources, tmp_path / "small", max_bytes=600_000, short_side=160)
    written = sum(p.stat().st_size for p in (tmp_path / "small").rglob("*.*") if p.name != "index.csv")
    assert written <= 600_000 and n >= 20
    samples = load_samples(tmp_path / "small")
    assert len(samples) == n
    shares = [sum(s.name.startswith(f"{k}_") for s in samples) / n for k in range(2)]
    expected = np.array([926, 5000]) / 5926
    assert np.allclose(shares, expected, atol=0.12), shares
    for sample in samples[:5]:
        image, gt = sample.load()
        assert min(image.shape[:2]) <= 160 and set(np.unique(gt)) <= {0, 1, 255} and (gt == 1).any()


def test_existing_target_is_refused(shared_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "small").mkdir()
    with pytest.raises(ValueError, match="exists"):
        make_subset([shared_dir / "data" / "train" / "ecssd"], tmp_path / "small", max_bytes=10_000)
