"""The official ResNet-101 / Res2Net-101 FCA-Nets against the reference key lists and golden outputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fcanet_core import build_model
from fcanet_core.modeling.fuse import fuse_for_inference

# (architecture, suffix of its reference files)
OFFICIAL = [("resnet101", "resnet"), ("res2net101", "res2net")]


def _reference_keys(reference_dir: Path, suffix: str) -> list[tuple[str, str, str]]:
    lines = (reference_dir / f"fcanet_keys_{suffix}.tsv").read_text().splitlines()
    return [tuple(line.split("\t")) for line in lines if line.strip()]


def _golden_logits(model: nn.Module, golden: np.lib.npyio.NpzFile) -> np.ndarray:
    maps = [torch.from_numpy(golden[name])[None, None] for name in ("pos_dist", "neg_dist", "first_dist")]
    with torch.inference_mode():
        return model(torch.from_numpy(golden["image"])[None], *maps)[0, 0].numpy()


@pytest.mark.parametrize("arch,suffix", OFFICIAL)
def test_state_dict_keys_shapes_and_order_equal_the_official(arch: str, suffix: str, reference_dir: Path) -> None:
    state = build_model(arch).state_dict()
    ours = [(k, str(tuple(v.shape)), str(v.dtype)) for k, v in state.items()]
    assert ours == _reference_keys(reference_dir, suffix)


@pytest.mark.parametrize("fused", [False, True], ids=["plain", "bn-folded"])
@pytest.mark.parametrize("arch,suffix", OFFICIAL)
def test_logits_equal_the_official_code(arch: str, suffix: str, fused: bool, official_model, folded_model,
                                        reference_dir: Path) -> None:
    golden = np.load(reference_dir / "golden" / f"model_{suffix}.npz")
    model = folded_model(arch) if fused else official_model(arch)
    logits = _golden_logits(model, golden)
    assert logits.shape == golden["logits"].shape
    np.testing.assert_allclose(logits, golden["logits"], rtol=0, atol=1e-4)


@pytest.mark.parametrize("arch", ["resnet101", "res2net101"])
def test_folding_removes_every_batchnorm_on_the_inference_path(arch: str, folded_model) -> None:
    fused = folded_model(arch)
    left = [name for name, m in fused.named_modules() if isinstance(m, nn.BatchNorm2d)]
    # Only the training-only first-click head (never run by forward) keeps its BatchNorms.
    assert left and all(name.startswith("first_pred_decoder.") for name in left)
    assert fused.fused_for_inference


def test_folding_leaves_the_original_model_untouched(tiny_model) -> None:
    tiny_model.train()
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    fused = fuse_for_inference(tiny_model)
    assert tiny_model.training and not fused.training
    after = tiny_model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert any(isinstance(m, nn.BatchNorm2d) for m in tiny_model.modules())
    assert not hasattr(tiny_model, "fused_for_inference")


@pytest.mark.parametrize("arch", ["resnet101", "res2net101"])
def test_output_stride_and_feature_sizes_for_odd_input(arch: str, official_model) -> None:
    model = official_model(arch)
    image = torch.rand(1, 3, 67, 93)
    five = torch.cat([image, image[:, :2]], dim=1)
    with torch.inference_mode():
        low = model.backbone_pre(five)
        high = model.backbone_last(low)
        logits = model(image, *(torch.full((1, 1, 67, 93), 255.0),) * 3)
    assert low.shape == (1, 256, 17, 24)  # ceil(ceil(67/2)/2), ceil(ceil(93/2)/2)
    assert high.shape == (1, 2048, 5, 6)  # two more ceil-halvings, then layer4 keeps stride 16
    assert logits.shape == (1, 1, 67, 93)
