"""The predictor: official end-to-end outputs, input handling, SIS and zoom-in."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fcanet_core import Click, Prediction, Predictor, apply_sis
from fcanet_core.clicks import clicks_from_rows
from fcanet_core.inference.predictor import sigmoid
from fcanet_core.inference.transforms import zoom_crop


@pytest.mark.parametrize("fuse", [True, False], ids=["bn-folded", "plain"])
@pytest.mark.parametrize("arch,suffix", [("resnet101", "resnet"), ("res2net101", "res2net")])
def test_pipeline_equals_the_official_code(arch: str, suffix: str, fuse: bool, official_model,
                                           reference_dir: Path) -> None:
    golden = np.load(reference_dir / "golden" / f"pipeline_{suffix}.npz")
    clicks = clicks_from_rows(golden["clicks"])
    predictor = Predictor(official_model(arch), sis=True, fuse=fuse, channels_last=fuse)
    pred = predictor.predict(golden["image"], clicks)
    assert pred.prob.dtype == np.float32 and pred.prob.shape == golden["prob"].shape
    np.testing.assert_allclose(pred.prob, golden["prob"], rtol=0, atol=1e-4)
    decided = np.abs(golden["prob"] - 0.5) >= 1e-5
    np.testing.assert_array_equal((pred.prob > 0.5)[decided], golden["pred"].astype(bool)[decided])
    np.testing.assert_array_equal(pred.mask, golden["pred_sis"])


# --- behaviour on a tiny random network ---------------------------------------------------------------

@pytest.fixture
def scene() -> tuple[np.ndarray, list[Click]]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    return image, [Click(45, 30, True), Click(10, 50, False), Click(70, 20, True)]


def test_prediction_contract(tiny_model, scene) -> None:
    image, clicks = scene
    pred = Predictor(tiny_model).predict(image, clicks)
    assert isinstance(pred, Prediction)
    assert pred.prob.shape == (60, 90) and pred.prob.dtype == np.float32
    assert pred.mask.dtype == np.uint8 and set(np.unique(pred.mask)) <= {0, 1}
    assert 0 <= pred.prob.min() and pred.prob.max() <= 1
    np.testing.assert_array_equal(pred.mask, (pred.prob > 0.5).astype(np.uint8))


def test_folding_and_memory_format_do_not_change_the_result(tiny_model, scene) -> None:
    image, clicks = scene
    fast = Predictor(tiny_model).predict(image, clicks)
    plain = Predictor(tiny_model, fuse=False, channels_last=False).predict(image, clicks)
    np.testing.assert_allclose(fast.prob, plain.prob, rtol=0, atol=1e-5)


def test_predictor_leaves_the_callers_model_alone(tiny_model, scene) -> None:
    tiny_model.train()
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    Predictor(tiny_model).predict(*scene)
    assert tiny_model.training
    assert all(torch.equal(v, before[k]) for k, v in tiny_model.state_dict().items())


def test_other_image_formats_give_the_rgb_result(tiny_model, scene) -> None:
    image, clicks = scene
    predictor = Predictor(tiny_model)
    grey = image[:, :, 0]
    expected_grey = predictor.predict(np.dstack([grey] * 3), clicks).prob
    np.testing.assert_array_equal(predictor.predict(grey, clicks).prob, expected_grey)
    expected = predictor.predict(image, clicks).prob
    rgba = np.dstack([image, np.full(grey.shape, 7, np.uint8)])
    np.testing.assert_array_equal(predictor.predict(rgba, clicks).prob, expected)
    np.testing.assert_array_equal(predictor.predict(image.astype(np.uint16) * 257, clicks).prob, expected)
    assert predictor.predict(grey > 127, clicks).prob.shape == grey.shape


@pytest.mark.parametrize("image,clicks,message", [
    (np.zeros((60, 90, 3), np.uint8), [], "no clicks"),
    (np.zeros((60, 90, 3), np.uint8), [Click(90, 10, True)], "outside the image"),
    (np.zeros((60, 90, 3), np.uint8), [Click(10, -1, True)], "outside the image"),
    (np.zeros((60, 90, 2), np.uint8), [Click(1, 1, True)], "H×W×3"),
    (np.zeros((2, 60, 90, 3), np.uint8), [Click(1, 1, True)], "H×W×3"),
])
def test_bad_inputs_raise_value_error(tiny_model, image: np.ndarray, clicks: list[Click], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Predictor(tiny_model).predict(image, clicks)


def test_prev_mask_of_another_size_is_rejected(tiny_model, scene) -> None:
    image, clicks = scene
    with pytest.raises(ValueError, match="prev_mask"):
        Predictor(tiny_model, zoom_in=True).predict(image, clicks, prev_mask=np.zeros((60, 91), np.uint8))


def test_sis_keeps_only_components_with_a_positive_click(tiny_model, scene) -> None:
    image, clicks = scene
    plain = Predictor(tiny_model).predict(image, clicks)
    with_sis = Predictor(tiny_model, sis=True).predict(image, clicks)
    np.testing.assert_array_equal(with_sis.prob, plain.prob)
    np.testing.assert_array_equal(with_sis.mask, apply_sis(plain.mask, clicks))


def test_zoom_in_predicts_on_the_crop_and_pastes_back(tiny_model) -> None:
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (400, 600, 3), dtype=np.uint8)
    prev = np.zeros((400, 600), np.uint8)
    prev[100:160, 200:280] = 1
    clicks = [Click(240, 130, True), Click(300, 150, False)]
    zoomed = Predictor(tiny_model, zoom_in=True, zoom_min_size=100).predict(image, clicks, prev_mask=prev)
    crop = zoom_crop(clicks, prev, 400, 600, 1.4, 100)
    assert crop is not None and crop.size[0] < 400 and crop.size[1] < 600
    on_crop = Predictor(tiny_model).predict(crop.image(image), crop.clicks(clicks))
    np.testing.assert_array_equal(zoomed.prob, crop.paste(on_crop.prob))
    np.testing.assert_array_equal(zoomed.mask, (zoomed.prob > 0.5).astype(np.uint8))


def test_zoom_in_is_skipped_for_a_single_click_without_previous_object(tiny_model) -> None:
    image = np.random.default_rng(5).integers(0, 256, (400, 600, 3), dtype=np.uint8)
    clicks = [Click(240, 130, True)]
    zooming = Predictor(tiny_model, zoom_in=True, zoom_min_size=100)
    full = Predictor(tiny_model).predict(image, clicks)
    np.testing.assert_array_equal(zooming.predict(image, clicks).prob, full.prob)
    empty = np.zeros((400, 600), np.uint8)
    np.testing.assert_array_equal(zooming.predict(image, clicks, prev_mask=empty).prob, full.prob)


def test_a_box_predicts_on_its_zoom_region_and_pastes_back(tiny_model) -> None:
    image = np.random.default_rng(6).integers(0, 256, (400, 600, 3), dtype=np.uint8)
    clicks = [Click(240, 130, True)]
    boxed = Predictor(tiny_model, zoom_min_size=100).predict(image, clicks, box=(200, 100, 320, 180))
    crop = zoom_crop([*clicks, Click(200, 100, True), Click(319, 179, True)], None, 400, 600, 1.4, 100)
    assert crop is not None and crop.size[0] < 400 and crop.size[1] < 600
    on_crop = Predictor(tiny_model).predict(crop.image(image), crop.clicks(clicks))
    np.testing.assert_array_equal(boxed.prob, crop.paste(on_crop.prob))
    np.testing.assert_array_equal(boxed.mask, crop.paste(on_crop.mask.astype(np.float32)).astype(np.uint8))
    whole = Predictor(tiny_model).predict(image, clicks, box=(0, 0, 600, 400))
    np.testing.assert_array_equal(whole.prob, Predictor(tiny_model).predict(image, clicks).prob)


def test_the_input_short_side_follows_the_model() -> None:
    from torch import nn

    from fcanet_core.inference.predictor import model_input_short_side

    official = nn.Conv2d(1, 1, 1)
    official.arch = "resnet101"
    assert model_input_short_side(official) == 512
    light = nn.Conv2d(1, 1, 1)
    light.arch = "lite0"
    assert model_input_short_side(light) == 352
    light.meta = {"input_short_side": 288}
    assert model_input_short_side(light) == 288
    assert model_input_short_side(nn.Conv2d(1, 1, 1)) == 512


def test_flip_average_is_the_mean_of_the_image_and_its_mirror(tiny_model) -> None:
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (64, 91, 3), dtype=np.uint8)  # short side 64: no resize, exact mirroring
    clicks = [Click(20, 30, True), Click(70, 10, False)]
    mirrored = [Click(90 - c.x, c.y, c.positive) for c in clicks]
    plain = Predictor(tiny_model, short_side=64)
    direct = plain.predict(image, clicks).prob
    mirror = plain.predict(np.ascontiguousarray(image[:, ::-1]), mirrored).prob[:, ::-1]
    averaged = Predictor(tiny_model, short_side=64, flip_average=True).predict(image, clicks)
    np.testing.assert_allclose(averaged.prob, (direct + mirror) / 2, atol=1e-5)
    assert not np.allclose(direct, mirror, atol=1e-3)  # the mirror really is another input
    np.testing.assert_array_equal(averaged.mask, (averaged.prob > 0.5).astype(np.uint8))


def test_numpy_sigmoid_matches_torch_over_the_float32_range() -> None:
    logits = np.concatenate([np.linspace(-200, 200, 4001, dtype=np.float32), np.float32([-1e30, 0, 1e30])])
    expected = torch.sigmoid(torch.from_numpy(logits)).numpy()
    got = sigmoid(logits.copy())
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert got[-3] == 0.0 and got[-1] == 1.0
