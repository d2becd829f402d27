"""Building FCA-Net variants by name."""
from __future__ import annotations

import pytest
import torch

from fcanet_core.modeling.build import MODEL_BUILDERS, build_model


def test_every_name_builds_its_variant_and_records_it() -> None:
    assert sorted(MODEL_BUILDERS) == ["lite0", "res2net101", "resnet101"]
    model = build_model("lite0")
    assert model.arch == "lite0"
    with torch.inference_mode():
        maps = [torch.full((1, 1, 64, 64), 255.0) for _ in range(3)]
        logits = model.eval()(torch.rand(1, 3, 64, 64), *maps)
    assert logits.shape == (1, 1, 64, 64) and torch.isfinite(logits).all()


def test_an_unknown_name_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown architecture 'vit'; choose one of \['lite0', 'res2net101', "):
        build_model("vit")
