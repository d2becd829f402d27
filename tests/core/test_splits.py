"""The validation split: whole images carved from the pool, read back as a dataset, never trained on."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcanet_core.data.datasets import load_samples
from fcanet_core.splits import carve, main, write_split
from fcanet_core.train import load_config
from fcanet_core.training.data import load_training_samples

REPO = Path(__file__).resolve().parents[2]


def _multi_object_folder(root: Path, objects_per_image: list[int]) -> Path:
    """An index.csv folder where image k holds ``objects_per_image[k]`` instance masks."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for k, count in enumerate(objects_per_image):
        Image.fromarray(np.full((8, 8, 3), k, np.uint8)).save(root / "images" / f"{k}.png")
        for j in range(count):
            mask = np.zeros((8, 8), np.uint8)
            mask[j, :] = 255
            Image.fromarray(mask).save(root / "masks" / f"{k}_{j}.png")
            rows.append(f"images/{k}.png,masks/{k}_{j}.png")
    (root / "index.csv").write_text("image,mask\n" + "\n".join(rows) + "\n")
    return root


def test_carve_takes_whole_images_until_the_count_and_is_deterministic(tmp_path: Path) -> None:
    pool = _multi_object_folder(tmp_path / "pool", [3, 1, 2, 4, 1, 2])
    picked = carve(pool, 5, np.random.default_rng(7))
    again = carve(pool, 5, np.random.default_rng(7))
    assert [s.mask_path for s in picked] == [s.mask_path for s in again]
    assert len(picked) >= 5
    per_image = {s.image_path for s in picked}
    everything = load_samples(pool)
    assert sum(s.image_path in per_image for s in everything) == len(picked)  # no image split in two


def test_written_split_reads_back_and_is_removed_from_training(tmp_path: Path) -> None:
    pool = _multi_object_folder(tmp_path / "pool", [2, 2, 1, 3])
    held = [s for s in load_samples(pool) if s.image_path.name in ("0.png", "3.png")]
    split = tmp_path / "elsewhere" / "val"
    write_split(held, split)
    back = load_samples(split)
    assert sorted(s.mask_path.resolve() for s in back) == sorted(s.mask_path.resolve() for s in held)
    kept = load_training_samples([pool], holdout=[split])
    assert sorted(s.mask_path.name for s in kept) == ["1_0.png", "1_1.png", "2_0.png"]
    assert len(load_training_samples([pool])) == 8


def test_cli_refuses_more_instances_than_the_pool_holds(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pool = _multi_object_folder(tmp_path / "pool", [1, 1])
    assert main(["--out", str(tmp_path / "val"), "--pick", f"{pool}:3"]) == 2  # bad input (fcanet_core.cli)
    assert "holds only 2 instances" in caplog.text and not (tmp_path / "val").exists()


def test_the_main_run_never_trains_on_the_validation_split(shared_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    config = load_config(REPO / "configs" / "lite0_main.py")
    assert config.holdout_dirs == ("splits/val",)
    val = load_samples(REPO / "splits" / "val")
    assert len(val) == 500
    assert {s.image_path.resolve().parents[1].name for s in val} == {"coco", "duts"}
    trained = load_training_samples(config.train_dirs, config.holdout_dirs)
    held = {s.image_path.resolve() for s in val}
    assert not held & {s.image_path.resolve() for s in trained}
    assert len(trained) < len(load_training_samples(config.train_dirs))
