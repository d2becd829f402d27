"""Training clicks: random click simulation and iterative-training (ITIS) updates.

Simulation follows the FCA-Net training recipe, with the first click taken as click 0 of the
positives (as the inference encoding does: the positive map contains the first click):

* First click: the interior-most object pixel, i.e. the robot user's first click on the crop
  (argmax of the distance transform of the zero-padded object mask, row-major ties).
* Positives: 1–10 in total, first click included. Candidates are object pixels farther than a
  margin drawn from {5, 10, 15, 20} px from the background (the crop border counts as background)
  and farther than a step drawn from {7, 10, 20} px from every earlier positive and from the border.
* Negatives: 0–10. Candidates are background pixels whose distance to the object lies strictly
  between a margin drawn from {15, 40, 60} px and 80 px, and farther than a step drawn from
  {10, 15, 25} px from every earlier negative and from the border.
* Picks are uniform over the remaining candidates; sampling stops early when none remains.
  Ignore pixels (255) are never clicked.

ITIS: after a training step each sample's click list is extended by the robot user's click on
the network's current prediction, thresholded at 0.5 like the inference mask, so the training
clicks follow the distribution the evaluation robot produces. With probability 0.7 the next visit
of that sample reuses its view and extended clicks; otherwise it is simulated afresh.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from ..clicks import Click
from ..evaluation.robot import next_click
from ..masks import distance_to_background

POS_MARGINS = (5, 10, 15, 20)
POS_STEPS = (7, 10, 20)
NEG_MARGINS = (15, 40, 60)
NEG_MAX_DISTANCE = 80
NEG_STEPS = (10, 15, 25)
MAX_POSITIVES = 10
MAX_NEGATIVES = 10
ITIS_PROBABILITY = 0.7
ITIS_THRESHOLD = 0.5


def first_click(gt: np.ndarray) -> Click:
    """The interior-most object pixel of ``gt`` (0/1/255) as a positive click."""
    if not (np.asarray(gt) == 1).any():
        raise ValueError("the mask has no object pixel: cannot place a first click")
    return next_click(np.zeros(gt.shape, dtype=np.uint8), gt)


def _border_distance(height: int, width: int) -> np.ndarray:
    """Distance of each pixel to the outside of the image (1 for the outermost pixels)."""
    ys = np.arange(height)[:, None]
    xs = np.arange(width)[None, :]
    return np.minimum(np.minimum(ys + 1, height - ys), np.minimum(xs + 1, width - xs)).astype(np.float64)


def _pick_spread(candidates: np.ndarray, count: int, step: float, taken: Sequence[Click],
                 rng: np.random.Generator) -> list[tuple[int, int]]:
    """Pick up to ``count`` pixels from ``candidates`` one at a time, each farther than ``step`` from earlier ones."""
    height, width = candidates.shape
    cand = candidates & (_border_distance(height, width) > step)
    ys, xs = np.mgrid[0:height, 0:width]
    for c in taken:
        cand &= (xs - c.x) ** 2 + (ys - c.y) ** 2 > step * step
    picks: list[tuple[int, int]] = []
    for _ in range(count):
        flat = np.flatnonzero(cand)
        if flat.size == 0:
            break
        y, x = divmod(int(flat[rng.integers(flat.size)]), width)
        picks.append((x, y))
        cand &= (xs - x) ** 2 + (ys - y) ** 2 > step * step
    return picks


def simulate_clicks(gt: np.ndarray, rng: np.random.Generator) -> list[Click]:
    """Random training clicks for a crop's ``gt`` (0/1/255): first click, other positives, negatives."""
    gt = np.asarray(gt)
    obj = gt == 1
    first = first_click(gt)
    inside = distance_to_background(np.pad(obj, 1))[1:-1, 1:-1]
    pos_margin = rng.choice(POS_MARGINS)
    pos_step = rng.choice(POS_STEPS)
    n_extra = int(rng.integers(0, MAX_POSITIVES))  # 0..9 besides the first click
    positives = [first] + [Click(x, y, True) for x, y in
                           _pick_spread(inside > pos_margin, n_extra, pos_step, [first], rng)]
    to_object = distance_to_background(~obj)
    neg_margin = rng.choice(NEG_MARGINS)
    neg_step = rng.choice(NEG_STEPS)
    n_neg = int(rng.integers(0, MAX_NEGATIVES + 1))
    neg_cand = (gt == 0) & (to_object > neg_margin) & (to_object < NEG_MAX_DISTANCE)
    negatives = [Click(x, y, False) for x, y in _pick_spread(neg_cand, n_neg, neg_step, [], rng)]
    return positives + negatives


def robot_update(clicks: Sequence[Click], prob: np.ndarray, gt: np.ndarray,
                 threshold: float = ITIS_THRESHOLD) -> list[Click]:
    """``clicks`` plus the robot user's next click on the prediction ``prob > threshold``."""
    if gt.shape != prob.shape:
        raise ValueError(f"prediction {prob.shape} and mask {gt.shape} differ in size")
    pred = (prob > threshold).astype(np.uint8)
    return [*clicks, next_click(pred, gt, clicks)]


@dataclass
class ItisMemory:
    """Per-sample memory of iterative training: the view a sample was shown in and its click list."""

    probability: float = ITIS_PROBABILITY
    entries: dict[int, tuple[Any, list[tuple[int, int, int]]]] = field(default_factory=dict)

    def remember(self, index: int, view: Any, clicks: Sequence[Click]) -> None:
        """Store ``view`` and ``clicks`` for sample ``index``."""
        self.entries[index] = (view, [c.as_row() for c in clicks])

    def recall(self, index: int, rng: np.random.Generator) -> tuple[Any, list[Click]] | None:
        """With the ITIS probability the stored (view, clicks) of ``index``, else (or if none) ``None``."""
        entry = self.entries.get(index)
        if entry is None or rng.random() >= self.probability:
            return None
        view, rows = entry
        return view, [Click(x, y, bool(p)) for x, y, p in rows]

    def state_dict(self) -> dict[str, Any]:
        """Picklable state for checkpoints."""
        return {"probability": self.probability, "entries": dict(self.entries)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.probability = state["probability"]
        self.entries = dict(state["entries"])

