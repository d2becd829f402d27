"""ONNX export and the ONNX Runtime and OpenVINO predictors: same logits and masks as torch, torch fallback when broken."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from fcanet_core import Click, Predictor, load_model
from fcanet_core.modeling.checkpoint import DEFAULT_CHECKPOINT
from fcanet_core.data.datasets import load_samples
from fcanet_core.inference.onnx_export import (ExportError, compare_logits, export_onnx, file_fingerprint, inference_network,
                                     probe_inputs)
from fcanet_core.inference.openvino_network import OpenVinoNetwork
from fcanet_core.inference.runtime import OnnxNetwork, build_predictor, resolve_runtime
from fcanet_core.inference.runtime_check import mask_agreement

from tests.core.conftest import make_tiny_model


def test_export_reproduces_torch_at_other_sizes(tmp_path: Path) -> None:
    model = make_tiny_model()
    report = export_onnx(model, tmp_path / "tiny.onnx", "fp-tiny")
    assert report["max_rel_logit_diff"] <= 1e-4
    network = OnnxNetwork(tmp_path / "tiny.onnx", threads=1)
    assert network.fingerprint == "fp-tiny"
    inputs = probe_inputs(61, 203, seed=3)                 # a size the export never saw: H and W are dynamic
    with torch.inference_mode():
        expected = inference_network(model)(*inputs)
    got = network(*inputs)
    assert got.shape == expected.shape == (1, 1, 61, 203)
    assert torch.allclose(got, expected, atol=1e-4)
    binding = OnnxNetwork(tmp_path / "tiny.onnx", threads=1, io_binding=True, arena=False)
    assert np.allclose(binding.run_numpy(inputs), got.numpy(), atol=1e-6)


def test_logit_check_rejects_a_network_that_differs() -> None:
    network = inference_network(make_tiny_model())

    def off_by_a_bit(inputs):
        with torch.inference_mode():
            return network(*inputs).numpy() + 0.01

    with pytest.raises(ExportError, match="differs from torch"):
        compare_logits(off_by_a_bit, network, [(40, 56)])


def test_resolve_runtime() -> None:
    assert resolve_runtime("auto", "cpu") == "openvino"            # installed: the fastest exact runtime here
    assert resolve_runtime("onnxruntime", "cpu") == "onnxruntime"
    assert resolve_runtime("auto", "cuda") == "torch"
    assert resolve_runtime("torch", "cpu") == "torch"
    with pytest.raises(ValueError, match="unknown runtime"):
        resolve_runtime("tensorrt", "cpu")


def test_missing_artefact_is_exported_and_used(tmp_path: Path) -> None:
    artefact = tmp_path / "versions" / "v1" / "model.onnx"
    predictor, choice = build_predictor(make_tiny_model(), runtime="auto", artefact=artefact, fingerprint="fp1")
    assert (choice.runtime, choice.fallback_reason, choice.artefact) == ("openvino", None, str(artefact))
    assert isinstance(predictor.model, OpenVinoNetwork) and artefact.is_file()
    _, choice = build_predictor(make_tiny_model(), runtime="onnxruntime", artefact=artefact, fingerprint="fp1")
    assert choice.runtime == "onnxruntime"                        # the same artefact serves both runtimes


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_stale_artefact_is_exported_again(tmp_path: Path, runtime: str) -> None:
    artefact = tmp_path / "model.onnx"
    export_onnx(make_tiny_model(seed=1), artefact, "old-weights")
    predictor, choice = build_predictor(make_tiny_model(seed=2), runtime=runtime, artefact=artefact,
                                        fingerprint="new-weights")
    assert choice.runtime == runtime and predictor.model.fingerprint == "new-weights"


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_corrupted_artefact_falls_back_to_torch(tmp_path: Path, caplog: pytest.LogCaptureFixture, runtime: str) -> None:
    artefact = tmp_path / "model.onnx"
    artefact.write_bytes(b"\x08\x07 this is not an ONNX model" * 50)
    with caplog.at_level(logging.WARNING, logger="fcanet_core.inference.runtime"):
        predictor, choice = build_predictor(make_tiny_model(), runtime=runtime, artefact=artefact,
                                            fingerprint="fp")
    assert choice.runtime == "torch" and choice.requested == runtime
    assert "cannot load" in choice.fallback_reason and str(artefact) in choice.fallback_reason
    assert "falling back to the torch runtime" in caplog.text
    image = np.full((40, 56, 3), 128, np.uint8)
    assert predictor.predict(image, [Click(20, 20, True)]).mask.shape == (40, 56)   # torch still serves
    assert artefact.read_bytes().startswith(b"\x08\x07 this")                        # left for inspection


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_artefact_with_other_weights_under_the_same_fingerprint_falls_back(tmp_path: Path, runtime: str) -> None:
    artefact = tmp_path / "model.onnx"
    export_onnx(make_tiny_model(seed=1), artefact, "fp")
    _, choice = build_predictor(make_tiny_model(seed=2), runtime=runtime, artefact=artefact, fingerprint="fp")
    assert choice.runtime == "torch" and "does not reproduce its torch model" in choice.fallback_reason


@pytest.fixture(scope="module")
def bundled_artefact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled model exported once for this module."""
    path = tmp_path_factory.mktemp("onnx") / "fcanet_lite0.onnx"
    export_onnx(load_model("default"), path, file_fingerprint(DEFAULT_CHECKPOINT))
    return path


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("options", [{}, {"sis": True, "zoom_in": True}], ids=["official", "sis-zoom"])
def test_artefact_masks_equal_torch_on_grabcut(shared_dir: Path, bundled_artefact: Path, options: dict,
                                               runtime: str) -> None:
    model = load_model("default")
    candidate, choice = build_predictor(model, runtime=runtime, artefact=bundled_artefact,
                                        fingerprint=file_fingerprint(DEFAULT_CHECKPOINT), **options)
    assert choice.runtime == runtime, choice.fallback_reason
    samples = load_samples(shared_dir / "data" / "grabcut", limit=3)
    result = mask_agreement(Predictor(model, **options), candidate, samples, n_clicks=2)
    assert result["images"] == 3
    assert result["first_click_iou"]["min"] >= 0.999
    assert result["all_clicks_iou"]["min"] >= 0.999


def test_default_runtime_box_prediction_equals_torch(shared_dir: Path, bundled_artefact: Path) -> None:
    model = load_model("default")
    candidate, choice = build_predictor(model, artefact=bundled_artefact, fingerprint=file_fingerprint(DEFAULT_CHECKPOINT))
    assert choice.runtime == "openvino", choice.fallback_reason
    image, gt = load_samples(shared_dir / "data" / "grabcut", limit=1)[0].load()
    ys, xs = np.nonzero(gt == 1)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    click = [Click(int(np.median(xs)), int(np.median(ys)), True)]
    expected = Predictor(model).predict(image, click, box=box)
    got = candidate.predict(image, click, box=box)
    assert np.abs(got.prob - expected.prob).max() < 1e-3
    assert (got.mask != expected.mask).mean() < 1e-3


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_artefact_runtime_flip_average_equals_torch(tmp_path: Path, runtime: str) -> None:
    model = make_tiny_model()
    candidate, choice = build_predictor(model, runtime=runtime, artefact=tmp_path / "tiny.onnx", fingerprint="fp",
                                        flip_average=True, sis=True)
    assert choice.runtime == runtime, choice.fallback_reason
    image = np.random.default_rng(0).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    clicks = [Click(10, 20, True), Click(50, 30, False)]
    expected = Predictor(model, flip_average=True, sis=True).predict(image, clicks)
    got = candidate.predict(image, clicks)
    assert np.abs(got.prob - expected.prob).max() < 1e-4
    assert np.array_equal(got.mask, expected.mask)
