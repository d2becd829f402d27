"""Dataset folders: index.csv and the official layouts give the same images and ground truth."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcanet_core.data.datasets import detect_layout, load_samples, read_image

#: GrabCut pairs used to build small folders in the official layouts: one with an ignore band.
STEMS = ("124080", "106024")


@pytest.fixture(scope="module")
def grabcut(shared_dir: Path) -> Path:
    return shared_dir / "data" / "grabcut"


@pytest.fixture(scope="module")
def reference(grabcut: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(image, gt) of the chosen pairs as the index.csv folder gives them."""
    return {s.name: s.load() for s in load_samples(grabcut) if s.name in STEMS}


def _raw_mask(grabcut: Path, stem: str) -> np.ndarray:
    return np.asarray(Image.open(grabcut / "masks" / f"{stem}.png"))


def _copy_images(grabcut: Path, folder: Path, suffix: str = ".jpg") -> None:
    folder.mkdir(parents=True)
    for stem in STEMS:
        shutil.copy(grabcut / "images" / f"{stem}.jpg", folder / f"{stem}{suffix}")


def test_index_csv_folder(grabcut: Path) -> None:
    samples = load_samples(grabcut)
    assert detect_layout(grabcut) == "index.csv"
    assert len(samples) == 50
    names = [s.name for s in samples]
    assert names == sorted(names) and len(set(names)) == 50
    image, gt = samples[1].load()
    assert samples[1].name == "124080"
    assert image.dtype == np.uint8 and image.shape == (321, 481, 3)
    assert gt.dtype == np.uint8 and gt.shape == (321, 481)
    assert set(np.unique(gt)) == {0, 1, 255}
    raw = _raw_mask(grabcut, "124080")
    np.testing.assert_array_equal(gt == 255, raw == 128)
    np.testing.assert_array_equal(gt == 1, raw == 255)


def test_limit_keeps_the_first_samples(grabcut: Path) -> None:
    assert [s.name for s in load_samples(grabcut, limit=3)] == [s.name for s in load_samples(grabcut)[:3]]
    with pytest.raises(ValueError, match="limit"):
        load_samples(grabcut, limit=0)


def test_grabcut_layout(tmp_path: Path, grabcut: Path, reference: dict) -> None:
    root = tmp_path / "GrabCut"
    _copy_images(grabcut, root / "data_GT")
    (root / "boundary_GT").mkdir()
    for stem in STEMS:
        Image.fromarray(_raw_mask(grabcut, stem)).save(root / "boundary_GT" / f"{stem}.bmp")
    samples = load_samples(root)
    assert detect_layout(root) == "GrabCut"
    assert [s.name for s in samples] == sorted(STEMS)
    for sample in samples:
        image, gt = sample.load()
        np.testing.assert_array_equal(image, reference[sample.name][0])
        np.testing.assert_array_equal(gt, reference[sample.name][1])


def test_berkeley_layout_uses_first_channel(tmp_path: Path, grabcut: Path, reference: dict) -> None:
    root = tmp_path / "Berkeley"
    _copy_images(grabcut, root / "images")
    (root / "masks").mkdir()
    for stem in STEMS:
        obj = reference[stem][1] == 1
        rgb = np.zeros(obj.shape + (3,), np.uint8)
        rgb[..., 0] = obj * 255  # only the first channel carries the object
        Image.fromarray(rgb).save(root / "masks" / f"{stem}.png")
    samples = load_samples(root)
    assert detect_layout(root) == "Berkeley"
    for sample in samples:
        np.testing.assert_array_equal(sample.gt, (reference[sample.name][1] == 1).astype(np.uint8))


@pytest.mark.parametrize("name, value, is_object", [
    ("DAVIS", 1, True),  # DAVIS: any non-zero value is object
    ("custom", 1, False),  # any other img/gt folder: object from 128 on
    ("custom", 200, True),
])
def test_img_gt_layouts(tmp_path: Path, grabcut: Path, reference: dict, name: str, value: int,
                        is_object: bool) -> None:
    root = tmp_path / name
    _copy_images(grabcut, root / "img")
    (root / "gt").mkdir()
    for stem in STEMS:
        Image.fromarray(((reference[stem][1] == 1) * value).astype(np.uint8)).save(root / "gt" / f"{stem}.png")
    samples = load_samples(root)
    assert detect_layout(root) == ("DAVIS" if name == "DAVIS" else "img/gt")
    assert [s.name for s in samples] == sorted(STEMS)
    for sample in samples:
        expected = (reference[sample.name][1] == 1) & is_object
        np.testing.assert_array_equal(sample.gt, expected.astype(np.uint8))


def test_voc_layout_one_sample_per_instance(tmp_path: Path, grabcut: Path, reference: dict) -> None:
    root = tmp_path / "VOC2012"
    _copy_images(grabcut, root / "JPEGImages")
    (root / "SegmentationObject").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(reversed(STEMS)) + "\n")
    expected = {}
    palette = list(np.random.default_rng(0).integers(0, 256, 768, dtype=np.uint8))
    for stem in STEMS:
        gt = reference[stem][1]
        left = np.zeros(gt.shape, bool)
        left[:, : gt.shape[1] // 2] = True
        index = np.zeros(gt.shape, np.uint8)
        index[(gt == 1) & left] = 2
        index[(gt == 1) & ~left] = 5
        index[gt == 255] = 255
        img = Image.fromarray(index, mode="P")
        img.putpalette(palette)
        img.save(root / "SegmentationObject" / f"{stem}.png")
        for instance in (2, 5):
            part = (index == instance).astype(np.uint8)
            part[gt == 255] = 255
            expected[f"{stem}#{instance}"] = part
    samples = load_samples(root)
    assert detect_layout(root) == "VOC2012"
    assert [s.name for s in samples] == ["106024#2", "106024#5", "124080#2", "124080#5"]
    for sample in samples:
        image, gt = sample.load()
        np.testing.assert_array_equal(image, reference[sample.name.split("#")[0]][0])
        np.testing.assert_array_equal(gt, expected[sample.name])
    assert [s.name for s in load_samples(root, limit=3)] == ["106024#2", "106024#5", "124080#2"]


def test_images_are_read_as_rgb(tmp_path: Path, grabcut: Path, reference: dict) -> None:
    rgb = reference["106024"][0]
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    loaded_grey = read_image(tmp_path / "grey.png")
    assert loaded_grey.shape == rgb.shape and loaded_grey.dtype == np.uint8
    assert (loaded_grey == grey[..., None]).all()
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgb)


def test_bad_folders_are_clear_errors(tmp_path: Path, grabcut: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        load_samples(tmp_path / "missing")
    with pytest.raises(ValueError, match="not a dataset folder"):
        load_samples(tmp_path)
    root = tmp_path / "x"
    _copy_images(grabcut, root / "img")
    (root / "gt").mkdir()
    with pytest.raises(ValueError, match="no mask named"):
        load_samples(root)
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "index.csv").write_text("img,msk\na.png,b.png\n")
    with pytest.raises(ValueError, match="image,mask"):
        load_samples(tmp_path / "csv")
    sample = load_samples(grabcut, limit=1)[0]
    mismatched = type(sample)("odd", sample.image_path, grabcut / "masks" / "181079.png")
    with pytest.raises(ValueError, match="odd"):
        mismatched.load()


def test_every_takes_an_evenly_spread_subset_before_the_limit(shared_dir) -> None:
    grabcut = shared_dir / "data" / "grabcut"
    names = [s.name for s in load_samples(grabcut)]
    assert [s.name for s in load_samples(grabcut, limit=2, every=20)] == [names[0], names[20]]
    assert [s.name for s in load_samples(grabcut, every=20)] == names[::20]
    with pytest.raises(ValueError, match="every must be at least 1"):
        load_samples(grabcut, every=0)
