"""Training click simulation and iterative-training updates."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from fcanet_core.clicks import Click
from fcanet_core.data.datasets import load_samples
from fcanet_core.training.data import CropSpec, random_view, render_view
from fcanet_core.training.sampling import (MAX_NEGATIVES, MAX_POSITIVES, NEG_MARGINS, NEG_MAX_DISTANCE, NEG_STEPS,
                                           POS_MARGINS, POS_STEPS, ItisMemory, first_click, robot_update,
                                           simulate_clicks)


def _real_crops(shared_dir: Path, n: int) -> list[np.ndarray]:
    """Ground truths of ``n`` real training crops at 128 px (ECSSD and COCO)."""
    rng = np.random.default_rng(7)
    spec = CropSpec(crop=128, short_side=160)
    crops = []
    for folder in ("ecssd", "coco"):
        for sample in load_samples(shared_dir / "data" / "train" / folder, limit=n // 2):
            image, gt = sample.load()
            crops.append(render_view(image, gt, random_view(gt, spec, rng), spec.crop)[1])
    return crops


def _synthetic() -> np.ndarray:
    gt = np.zeros((120, 160), np.uint8)
    gt[20:100, 30:90] = 1
    gt[40:60, 100:150] = 1  # a second, thinner part
    gt[0:10, :] = 255  # an ignore band
    return gt


def _pairwise_min(points: list[Click]) -> float:
    if len(points) < 2:
        return np.inf
    xy = np.array([(c.x, c.y) for c in points], float)
    d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    return float(d[np.triu_indices(len(points), 1)].min())


def _border(c: Click, gt: np.ndarray) -> int:
    h, w = gt.shape
    return min(c.x + 1, c.y + 1, w - c.x, h - c.y)


def test_constraints_hold_on_every_drawn_click(shared_dir: Path) -> None:
    rng = np.random.default_rng(0)
    masks = [_synthetic(), *_real_crops(shared_dir, 8)]
    counts_pos, counts_neg = set(), set()
    for draw in range(160):
        gt = masks[draw % len(masks)]
        obj = gt == 1
        inside = distance_transform_edt(np.pad(obj, 1))[1:-1, 1:-1]
        to_object = distance_transform_edt(~obj)
        clicks = simulate_clicks(gt, rng)
        pos = [c for c in clicks if c.positive]
        neg = [c for c in clicks if not c.positive]
        assert clicks[0] == pos[0] and 1 <= len(pos) <= MAX_POSITIVES and len(neg) <= MAX_NEGATIVES
        assert clicks == pos + neg
        for c in clicks:
            assert float(c.x).is_integer() and 0 <= c.x < gt.shape[1] and 0 <= c.y < gt.shape[0]
            assert gt[c.y, c.x] != 255
        for c in pos[1:]:
            assert obj[c.y, c.x] and inside[c.y, c.x] > min(POS_MARGINS)
            assert _border(c, gt) > min(POS_STEPS)
        assert _pairwise_min(pos) > min(POS_STEPS)
        for c in neg:
            assert gt[c.y, c.x] == 0 and min(NEG_MARGINS) < to_object[c.y, c.x] < NEG_MAX_DISTANCE
            assert _border(c, gt) > min(NEG_STEPS)
        assert _pairwise_min(neg) > min(NEG_STEPS)
        counts_pos.add(len(pos))
        counts_neg.add(len(neg))
    assert max(counts_pos) > 3 and 0 in counts_neg and max(counts_neg) > 3  # the counts really vary


def test_first_click_is_the_interior_most_point() -> None:
    gt = _synthetic()
    dist = distance_transform_edt(np.pad(gt == 1, 1))[1:-1, 1:-1]
    click = first_click(gt)
    assert click.positive and dist[click.y, click.x] == dist.max()
    # The 80×60 block peaks at 30 px on columns 59–60 of rows 49–70; row-major order picks the first.
    assert (click.x, click.y) == (59, 49)
    assert simulate_clicks(gt, np.random.default_rng(3))[0] == click


def test_same_seed_same_clicks_and_different_seed_differs() -> None:
    gt = _synthetic()
    a = [simulate_clicks(gt, np.random.default_rng(5)) for _ in range(2)]
    assert a[0] == a[1]
    draws = {tuple(simulate_clicks(gt, np.random.default_rng(s))) for s in range(10)}
    assert len(draws) > 5


def test_empty_mask_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no object"):
        simulate_clicks(np.zeros((32, 32), np.uint8), np.random.default_rng(0))


def test_robot_update_adds_the_robot_click_on_the_thresholded_prediction() -> None:
    gt = np.zeros((40, 40), np.uint8)
    gt[5:35, 5:35] = 1
    prob = np.zeros((40, 40), np.float32)
    prob[5:35, 5:20] = 0.9  # right half of the object missed
    prob[5:35, 20:35] = 0.3  # below the 0.5 threshold
    clicks = [Click(12, 20, True)]
    updated = robot_update(clicks, prob, gt)
    assert updated[:1] == clicks and len(updated) == 2
    new = updated[1]
    assert new.positive and 20 <= new.x < 35 and gt[new.y, new.x] == 1
    with pytest.raises(ValueError, match="size"):
        robot_update(clicks, prob[:10], gt)


def test_itis_memory_recalls_with_its_probability_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    clicks = [Click(1, 2, True), Click(3, 4, False)]
    always = ItisMemory(probability=1.0)
    always.remember(7, (1.0, 2, 3, False), clicks)
    assert always.recall(7, rng) == ((1.0, 2, 3, False), clicks)
    assert always.recall(8, rng) is None
    never = ItisMemory(probability=0.0)
    never.load_state_dict(always.state_dict())
    never.probability = 0.0
    assert never.recall(7, rng) is None
    half = ItisMemory(probability=0.7)
    half.load_state_dict({**always.state_dict(), "probability": 0.7})
    hits = sum(half.recall(7, rng) is not None for _ in range(1000))
    assert 620 < hits < 780
