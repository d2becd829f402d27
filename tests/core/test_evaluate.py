"""The robot-user evaluator: exact NoC/mIoU bookkeeping, and the CLI end to end on GrabCut."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcanet_core import Click, next_click
from fcanet_core.data.datasets import load_samples
from fcanet_core.evaluate import evaluate, parse_args

REPO_ROOT = Path(__file__).resolve().parents[2]
H, W = 120, 160


@dataclass
class MemorySample:
    """An in-memory instance, as the training and learning code pass them."""

    name: str
    image: np.ndarray
    gt: np.ndarray


@dataclass
class Answer:
    mask: np.ndarray


@dataclass
class ScriptedPredictor:
    """Returns a scripted mask per click count; images are told apart by their constant value."""

    script: dict[int, list[np.ndarray]]  # image value → mask after click 1, 2, ...
    calls: list[tuple[int, list[Click]]] = field(default_factory=list)
    prev_masks: list[np.ndarray | None] = field(default_factory=list)

    def predict(self, image: np.ndarray, clicks: list[Click], prev_mask: np.ndarray | None = None) -> Answer:
        key = int(image[0, 0, 0])
        self.calls.append((key, list(clicks)))
        self.prev_masks.append(prev_mask)
        masks = self.script[key]
        return Answer(masks[min(len(clicks), len(masks)) - 1])


def _image(value: int) -> np.ndarray:
    return np.full((H, W, 3), value, np.uint8)


def _scenario() -> tuple[list[MemorySample], ScriptedPredictor, np.ndarray]:
    """Three instances: reaches 0.875 at click 2 and 1.0 at click 4; never; 1.0 at once (ignore band)."""
    empty = np.zeros((H, W), np.uint8)
    gt_a = empty.copy()
    gt_a[10:80, 10:110] = 1  # 7000 object pixels
    with_fp = gt_a.copy()
    with_fp[90:110, 120:160] = 1  # 800 false positives: IoU 7000 / 7800
    gt_c = empty.copy()
    gt_c[30:90, 40:120] = 1
    gt_c[28:30, 40:120] = 255  # ignore band, predicted as object: must not count
    pred_c = ((gt_c == 1) | (gt_c == 255)).astype(np.uint8)
    samples = [
        MemorySample("a", _image(1), gt_a),
        MemorySample("b", _image(2), gt_c.copy()),
        MemorySample("c", _image(3), gt_c),
    ]
    script = {1: [empty, with_fp, with_fp, gt_a], 2: [empty], 3: [pred_c]}
    iou_a = 7000 / 7800
    return samples, ScriptedPredictor(script), np.array([
        [0.0, iou_a, iou_a, 1.0, 1.0],
        [0.0] * 5,
        [1.0] * 5,
    ])


def test_noc_and_curve_are_exact() -> None:
    samples, predictor, ious = _scenario()
    result = evaluate(predictor, samples, max_clicks=5)
    assert result.n == 3 and result.max_clicks == 5
    np.testing.assert_allclose([inst.ious for inst in result.instances], ious, atol=1e-12)
    assert [inst.noc(0.85) for inst in result.instances] == [2, 5, 1]
    assert [inst.noc(0.90) for inst in result.instances] == [4, 5, 1]
    assert result.noc85 == pytest.approx((2 + 5 + 1) / 3)
    assert result.noc90 == pytest.approx((4 + 5 + 1) / 3)
    np.testing.assert_allclose(result.miou_curve, ious.mean(axis=0))
    assert result.spc > 0

    report = result.to_dict(target_iou=0.95)
    assert report["noc_target"] == pytest.approx((4 + 5 + 1) / 3)
    assert [i["noc85"] for i in report["instances"]] == [2, 5, 1]
    assert [i["noc_target"] for i in report["instances"]] == [4, 5, 1]
    json.dumps(report)  # JSON-ready


def test_every_instance_gets_max_clicks_from_the_robot() -> None:
    samples, predictor, _ = _scenario()
    evaluate(predictor, samples, max_clicks=5)
    per_image = {key: [clicks for k, clicks in predictor.calls if k == key] for key in (1, 2, 3)}
    for key, calls in per_image.items():
        assert [len(c) for c in calls] == [1, 2, 3, 4, 5], key
        for shorter, longer in zip(calls, calls[1:]):
            assert longer[:-1] == shorter  # clicks accumulate, first click stays first
    sample_a = samples[0]
    first = next_click(np.zeros((H, W), np.uint8), sample_a.gt)
    assert per_image[1][0] == [first]
    # After click 2 the prediction has a false-positive block larger than any miss: click 3 is
    # negative inside it, so the robot clicked on the predictor's mask.
    third = per_image[1][2][2]
    assert not third.positive and 90 <= third.y < 110 and 120 <= third.x < 160


def test_each_click_after_the_first_gets_the_previous_mask() -> None:
    samples, predictor, _ = _scenario()
    evaluate(predictor, samples[:1], max_clicks=4)
    script = predictor.script[1]
    assert predictor.prev_masks[0] is None
    for k, prev in enumerate(predictor.prev_masks[1:], start=1):
        assert prev is not None and np.array_equal(prev, script[k - 1]), k


def test_bad_input_is_a_clear_error() -> None:
    samples, predictor, _ = _scenario()
    with pytest.raises(ValueError, match="max_clicks"):
        evaluate(predictor, samples, max_clicks=0)
    with pytest.raises(ValueError, match="no samples"):
        evaluate(predictor, [], max_clicks=3)
    odd = MemorySample("odd", _image(1)[:50], samples[0].gt)
    with pytest.raises(ValueError, match="odd"):
        evaluate(predictor, [odd], max_clicks=3)


@pytest.fixture(scope="module")
def checkpoint_arg(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``default`` when the bundled model is present, else a random-weights lite0 checkpoint."""
    if (REPO_ROOT / "models" / "fcanet_lite0.pt").is_file():
        return "default"
    from fcanet_core import build_model, save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "random_lite0.pt"
    save_checkpoint(path, build_model("lite0"), "lite0", {"version": "random-test"})
    return str(path)


@pytest.mark.slow
def test_cli_writes_json_and_plot(tmp_path: Path, shared_dir: Path, checkpoint_arg: str) -> None:
    dataset = shared_dir / "data" / "grabcut"
    out_json, out_png = tmp_path / "eval.json", tmp_path / "curve.png"
    max_clicks = 5  # keeps the run short on CPU; the default of 20 is checked below
    proc = subprocess.run(
        [sys.executable, "-m", "fcanet_core.evaluate", "--checkpoint", checkpoint_arg, "--dataset", str(dataset),
         "--limit", "3", "--max-clicks", str(max_clicks), "--json", str(out_json), "--plot", str(out_png),
         "--device", "cpu", "--target-iou", "0.8"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=540,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out_json.read_text())
    assert json.loads(proc.stdout.strip().splitlines()[-1])["n"] == 3
    for key in ("dataset", "n", "noc85", "noc90", "miou_curve", "spc", "checkpoint", "device", "instances"):
        assert key in report, key
    assert report["n"] == 3 and report["device"] == "cpu" and report["checkpoint"] == checkpoint_arg
    assert report["max_clicks"] == max_clicks and report["sis"] is False and report["limit"] == 3
    assert report["short_side"] in (352, 512)  # the model's own input scale (bundled lite0 / random)
    assert [i["name"] for i in report["instances"]] == ["106024", "124080", "153077"]
    curve = np.array(report["miou_curve"])
    assert curve.shape == (max_clicks,) and ((curve >= 0) & (curve <= 1)).all()
    ious = np.array([i["ious"] for i in report["instances"]])
    np.testing.assert_allclose(ious.mean(axis=0), curve)
    for key, target in (("noc85", 0.85), ("noc90", 0.90), ("noc_target", 0.8)):
        nocs = [i[key] for i in report["instances"]]
        assert all(1 <= k <= max_clicks for k in nocs)
        for inst, k in zip(report["instances"], nocs):
            reached = [n for n, v in enumerate(inst["ious"], start=1) if v >= target]
            assert k == (reached[0] if reached else max_clicks)
        assert report[key] == pytest.approx(np.mean(nocs))
    for inst in report["instances"]:
        assert len(inst["clicks"]) == max_clicks and inst["clicks"][0][2] == 1  # first click positive
    assert report["spc"] > 0
    with Image.open(out_png) as png:
        assert png.format == "PNG" and png.size[0] > 100


@pytest.mark.slow
def test_cli_every_takes_an_evenly_spread_subset(tmp_path: Path, shared_dir: Path, checkpoint_arg: str) -> None:
    dataset = shared_dir / "data" / "grabcut"
    out_json = tmp_path / "eval.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fcanet_core.evaluate", "--checkpoint", checkpoint_arg, "--dataset", str(dataset),
         "--every", "20", "--max-clicks", "1", "--json", str(out_json), "--device", "cpu"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out_json.read_text())
    names = [s.name for s in load_samples(dataset)]
    assert [i["name"] for i in report["instances"]] == [names[0], names[20], names[40]]
    assert report["every"] == 20


@pytest.mark.parametrize("flag", ["--every", "--limit"])
def test_cli_rejects_a_subset_below_one(flag: str) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--checkpoint", "default", "--dataset", "x", flag, "0"])


def test_cli_plot_without_matplotlib_exits_2_naming_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)    # what `import matplotlib` meets when it is not installed
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--checkpoint", "default", "--dataset", "x", "--plot", "curve.png"])
    assert exit_info.value.code == 2
    assert "pip install .[plot]" in capsys.readouterr().err


def test_cli_defaults_follow_the_protocol() -> None:
    args = parse_args(["--checkpoint", "default", "--dataset", "x"])
    assert args.max_clicks == 20 and not args.sis and args.limit is None and args.target_iou is None
    assert args.short_side is None  # the model's own


def test_cli_rejects_unknown_dataset(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fcanet_core.evaluate", "--checkpoint", "default", "--dataset", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "not a dataset folder" in proc.stderr
