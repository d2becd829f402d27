"""Checkpoint reading and writing: official files, project files, fp16, errors, atomic saves."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import torch

from fcanet_core import load_model, save_checkpoint
from fcanet_core.modeling import checkpoint
from fcanet_core.modeling.checkpoint import FORMAT, FORMAT_VERSION, infer_arch, resolve_checkpoint
from fcanet_core.modeling.fuse import fuse_for_inference


@pytest.fixture
def ckpt_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder for checkpoint files, emptied afterwards (the official-size files are ~300 MB)."""
    yield tmp_path
    for file in tmp_path.iterdir():
        file.unlink()


def _assert_same_weights(model: torch.nn.Module, reference: torch.nn.Module, half: bool = False) -> None:
    ours, ref = model.state_dict(), reference.state_dict()
    assert list(ours) == list(ref)
    for key, value in ref.items():
        expected = value.half().float() if half and value.is_floating_point() else value
        assert ours[key].dtype == value.dtype, key
        assert torch.equal(ours[key], expected), key


def test_official_plain_state_dict_loads_strictly(official_model, ckpt_dir: Path) -> None:
    reference = official_model("resnet101")
    path = ckpt_dir / "fcanet-resnet.pth"
    torch.save(reference.state_dict(), path)
    model = load_model(path)
    assert model.arch == "resnet101" and model.meta == {"source": "official"}
    assert not model.training
    _assert_same_weights(model, reference)


def test_official_architecture_is_recognised_from_the_keys(reference_dir: Path) -> None:
    for suffix, arch in (("resnet", "resnet101"), ("res2net", "res2net101")):
        keys = [line.split("\t")[0] for line in (reference_dir / f"fcanet_keys_{suffix}.tsv").read_text().splitlines()]
        assert infer_arch(keys) == arch
    with pytest.raises(ValueError, match="not an FCA-Net state_dict"):
        infer_arch(["encoder.weight", "decoder.bias"])


@pytest.mark.parametrize("half", [False, True], ids=["fp32", "fp16"])
def test_project_checkpoint_round_trip(official_model, ckpt_dir: Path, half: bool) -> None:
    reference = official_model("res2net101")
    path = save_checkpoint(ckpt_dir / "model.pt", reference, "res2net101", {"version": "v7", "steps": 12}, half=half)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format"] == FORMAT and raw["format_version"] == FORMAT_VERSION and raw["arch"] == "res2net101"
    stored = raw["state_dict"]["backbone_pre.conv1.0.weight"].dtype
    assert stored == (torch.float16 if half else torch.float32)
    model = load_model(path)
    assert model.arch == "res2net101"
    assert model.meta["version"] == "v7" and model.meta["steps"] == 12 and "created" in model.meta
    _assert_same_weights(model, reference, half=half)


def test_unknown_and_missing_keys_are_reported(official_model, ckpt_dir: Path) -> None:
    state = dict(official_model("resnet101").state_dict())
    del state["pred_decoder.pred_conv.6.bias"]
    state["pred_decoder.extra.weight"] = torch.zeros(1)
    path = ckpt_dir / "odd.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match="do not fit architecture 'resnet101'") as info:
        load_model(path)
    assert "pred_decoder.pred_conv.6.bias" in str(info.value) and "pred_decoder.extra.weight" in str(info.value)


def test_state_dict_of_another_network_is_refused(ckpt_dir: Path) -> None:
    path = ckpt_dir / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="not an FCA-Net state_dict"):
        load_model(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04" + b"\x00" * 64])
def test_corrupt_file_gives_a_clear_error(ckpt_dir: Path, content: bytes) -> None:
    path = ckpt_dir / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_model(path)


def test_truncated_checkpoint_gives_a_clear_error(tiny_model, ckpt_dir: Path) -> None:
    whole = ckpt_dir / "whole.pt"
    torch.save(tiny_model.state_dict(), whole)
    cut = ckpt_dir / "cut.pt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_model(cut)


def test_project_checkpoint_problems_are_named(ckpt_dir: Path) -> None:
    path = ckpt_dir / "future.pt"
    torch.save({"format": FORMAT, "format_version": 99, "arch": "lite0", "state_dict": {}, "meta": {}}, path)
    with pytest.raises(ValueError, match="format version 99"):
        load_model(path)
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "arch": "vgg16", "state_dict": {}}, path)
    with pytest.raises(ValueError, match="unknown architecture 'vgg16'"):
        load_model(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match="not a checkpoint"):
        load_model(path)


def test_missing_file_and_missing_default(ckpt_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_model(ckpt_dir / "nowhere.pt")
    assert resolve_checkpoint("default").parts[-2:] == ("models", "fcanet_lite0.pt")
    monkeypatch.setattr(checkpoint, "DEFAULT_CHECKPOINT", ckpt_dir / "models" / "fcanet_lite0.pt")
    with pytest.raises(FileNotFoundError, match="default model"):
        load_model("default")


def test_interrupted_save_leaves_the_previous_file_intact(official_model, ckpt_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    model = official_model("resnet101")
    path = save_checkpoint(ckpt_dir / "model.pt", model, "resnet101", {"version": "old"}, half=True)
    before = path.read_bytes()

    def dies_half_way(obj, f) -> None:
        f.write(before[: len(before) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", dies_half_way)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, model, "resnet101", {"version": "new"}, half=True)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in ckpt_dir.iterdir()] == ["model.pt"]  # no temporary file left behind
    assert load_model(path).meta["version"] == "old"


def test_save_refuses_what_it_could_not_load_back(tiny_model, ckpt_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown architecture"):
        save_checkpoint(ckpt_dir / "a.pt", tiny_model, "resnet50", {})
    with pytest.raises(ValueError, match="BN-folded"):
        save_checkpoint(ckpt_dir / "b.pt", fuse_for_inference(tiny_model), "resnet101", {})
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(ckpt_dir / "c.pt", tiny_model, "resnet101", {"when": object()})
    assert not list(ckpt_dir.iterdir())
