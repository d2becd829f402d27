"""The process-wide engine (tiny model): segmentation, box zoom, version switching."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import fcanet_core
from backend.inference.engine import InferenceEngine, get_engine, resolve_device
from backend.labelstudio.regions import Box
from backend.storage.registry import ModelRegistry
from fcanet_core import Click
from fcanet_core.inference.transforms import zoom_crop


@pytest.fixture(scope="module")
def image(shared_dir) -> np.ndarray:
    return np.asarray(Image.open(shared_dir / "data" / "grabcut" / "images" / "banana1.png").convert("RGB"))


def test_segment_gives_a_binary_mask_and_its_mean_probability(make_settings, image):
    engine = get_engine(make_settings())
    assert engine is get_engine(make_settings())      # one engine per process and model configuration
    assert engine.model_version == "tiny-lite0"
    mask, score = engine.segment(image, [Click(300, 200, True)])
    assert mask.shape == image.shape[:2] and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    assert 0.5 < score <= 1.0


def test_torch_threads_setting_limits_the_inference_threads(make_settings):
    before = torch.get_num_threads()
    try:
        get_engine(make_settings(TORCH_THREADS="1"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_box_limits_the_prediction_to_the_zoom_region(make_settings, image):
    engine = get_engine(make_settings())
    box = Box(20, 20, 100, 80)
    mask, _ = engine.segment(image, [Click(60, 50, True)], box=box)
    crop = zoom_crop([Click(60, 50, True), Click(20, 20, True), Click(99, 79, True)], None,
                                            *image.shape[:2])
    outside = np.ones_like(mask, dtype=bool)
    outside[crop.y0:crop.y1, crop.x0:crop.x1] = False
    assert crop.x1 < image.shape[1] and not mask[outside].any()
    assert mask[crop.y0:crop.y1, crop.x0:crop.x1].any()


def test_zoom_in_reuses_the_mask_of_the_previous_clicks(make_settings, image, tiny_checkpoint):
    settings = make_settings(FCANET_ZOOM_IN="true")
    engine = get_engine(settings)
    first, second = Click(300, 200, True), Click(330, 220, False)
    mask1, _ = engine.segment(image, [first], image_key="img")
    mask2, _ = engine.segment(image, [first, second], image_key="img")
    reference = fcanet_core.Predictor(fcanet_core.load_model(tiny_checkpoint), sis=True, zoom_in=True, short_side=64)
    expected = reference.predict(image, [first, second], prev_mask=mask1).mask
    np.testing.assert_array_equal(mask2, expected)
    assert not np.array_equal(mask2, reference.predict(image, [first, second]).mask)   # the previous mask mattered


def test_reload_follows_promotion_and_survives_a_broken_registry(make_settings, tmp_path, tiny_checkpoint, image):
    settings = make_settings(MODEL_DIR=str(tmp_path / "model_data"))
    engine = InferenceEngine(settings)
    assert engine.reload_if_changed() is False
    model = fcanet_core.load_model(tiny_checkpoint)
    with torch.no_grad():
        next(p for p in model.parameters() if p.dim() > 1).mul_(-1.0)
    registry = ModelRegistry(settings.model_dir, settings.fcanet_checkpoint)
    registry.add_candidate(model, name="tiny-v2", parent="tiny-lite0", data={}, metrics={})
    before, _ = engine.segment(image, [Click(300, 200, True)])
    registry.promote("tiny-v2")
    assert engine.reload_if_changed() is True and engine.model_version == "tiny-v2"
    after, _ = engine.segment(image, [Click(300, 200, True)])
    assert not np.array_equal(before, after)
    registry.pointer_path.write_text("{ broken")
    assert engine.reload_if_changed() is False and engine.model_version == "tiny-v2"


def test_a_version_is_served_by_its_artefact_and_a_broken_one_falls_back_to_torch(make_settings, tmp_path,
                                                                                  tiny_checkpoint, image, caplog):
    settings = make_settings(MODEL_DIR=str(tmp_path / "model_data"))
    registry = ModelRegistry(settings.model_dir, settings.fcanet_checkpoint)
    model = fcanet_core.load_model(tiny_checkpoint)
    registry.add_candidate(model, name="tiny-good", parent="tiny-lite0", data={}, metrics={})
    artefact = tmp_path / "model_data" / "versions" / "tiny-good" / "model.onnx"
    assert artefact.is_file()                                   # exported at registration
    registry.promote("tiny-good")
    engine = InferenceEngine(settings)
    assert engine.runtime_state() == {"model_version": "tiny-good", "requested": "auto", "runtime": "openvino",
                                      "artefact": str(artefact), "fallback_reason": None, "not_serving": None}
    served, _ = engine.segment(image, [Click(300, 200, True)])
    reference = fcanet_core.Predictor(model, sis=True, short_side=64).predict(image, [Click(300, 200, True)]).mask
    assert (served != reference).mean() < 1e-4
    registry.add_candidate(model, name="tiny-broken", parent="tiny-good", data={}, metrics={})
    broken = tmp_path / "model_data" / "versions" / "tiny-broken" / "model.onnx"
    broken.chmod(0o644)
    broken.write_bytes(broken.read_bytes()[:5000])             # a truncated copy
    registry.promote("tiny-broken")
    with caplog.at_level("WARNING"):
        assert engine.reload_if_changed() is True
    state = engine.runtime_state()
    assert state["model_version"] == "tiny-broken" and state["runtime"] == "torch"
    assert "cannot load" in state["fallback_reason"] and str(broken) in state["fallback_reason"]
    assert "falling back to the torch runtime" in caplog.text
    served, _ = engine.segment(image, [Click(300, 200, True)])
    np.testing.assert_array_equal(served, reference)


def test_device_names():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="not a torch device"):
        resolve_device("gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
