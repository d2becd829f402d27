"""BatchNorm folding: the same logits from fewer layers, the original left as it was, a bad fold refused."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fcanet_core.modeling import build_model
from fcanet_core.modeling.fuse import fuse_for_inference


def _with_trained_statistics(model: nn.Module) -> nn.Module:
    """BatchNorm layers with non-trivial statistics and affine terms, as after training."""
    gen = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
    return model.eval()


def _inputs() -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(2)
    return (torch.rand(1, 3, 96, 80, generator=gen), *(torch.rand(1, 1, 96, 80, generator=gen) * 255 for _ in range(3)))


def test_folded_lite0_computes_the_same_logits_without_batchnorm() -> None:
    torch.manual_seed(0)
    model = _with_trained_statistics(build_model("lite0"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_for_inference(model)
    bn_left = sum(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    bn_before = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert fused.fused_for_inference and bn_left < bn_before / 2
    with torch.inference_mode():
        ours, reference = fused(*_inputs()), model(*_inputs())
    assert torch.allclose(ours, reference, atol=1e-4 * max(1.0, reference.abs().max().item()))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the original is untouched


def test_a_fold_that_changes_the_logits_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = _with_trained_statistics(build_model("lite0"))

    def wrong_fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
        conv = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
        conv.weight.data.mul_(1.5)
        return conv

    monkeypatch.setattr("fcanet_core.modeling.fuse.fuse_conv_bn_eval", wrong_fold)
    with pytest.raises(RuntimeError, match="folding BatchNorm changed the probe logits"):
        fuse_for_inference(model)
