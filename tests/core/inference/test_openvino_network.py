"""The OpenVINO network: an exported artefact compiled for the CPU gives torch's logits at any size."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fcanet_core.inference.onnx_export import export_onnx, inference_network, probe_inputs
from fcanet_core.inference.openvino_network import OpenVinoNetwork

from tests.core.conftest import make_tiny_model


def test_openvino_reproduces_torch_at_other_sizes(tmp_path: Path) -> None:
    model = make_tiny_model()
    export_onnx(model, tmp_path / "tiny.onnx", "fp-tiny")
    network = OpenVinoNetwork(tmp_path / "tiny.onnx", threads=1)
    assert network.fingerprint == "fp-tiny"
    for height, width in ((61, 203), (40, 56), (61, 203)):     # new shapes, and one seen before
        inputs = probe_inputs(height, width, seed=height)
        with torch.inference_mode():
            expected = inference_network(model)(*inputs)
        got = network(*inputs)
        assert got.shape == expected.shape == (1, 1, height, width)
        assert torch.allclose(got, expected, atol=1e-4)


def test_openvino_rejects_an_unknown_precision(tmp_path: Path) -> None:
    export_onnx(make_tiny_model(), tmp_path / "tiny.onnx", "fp")
    with pytest.raises(ValueError, match="precision must be one of f32, bf16"):
        OpenVinoNetwork(tmp_path / "tiny.onnx", precision="f16")
