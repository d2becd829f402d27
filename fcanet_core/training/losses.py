"""The FCA-Net click loss: BCE weighted up near the clicks, for the main and the first-click heads.

Per-pixel weight ``w(d) = α + (β − α)·(1 − min(d, τ)/τ)`` with τ = 100, α = 0.8, β = 2.0: 2.0 on
a click, falling linearly to 0.8 at 100 px and beyond (crop pixels).

* Main head: object pixels use ``d`` = distance to the nearest positive click, background
  pixels the distance to the nearest negative click (255, hence weight 0.8, when there is none).
* First-click head: object pixels use the distance to the first click, background pixels 0.8.

Pixels whose target is 255 (ignore) get weight 0: they count in the mean's denominator but add
nothing, so a crop's loss scale does not depend on how much of it is ignored.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

TAU = 100.0
ALPHA = 0.8
BETA = 2.0
IGNORE = 255


def click_weight(dist: torch.Tensor, tau: float = TAU, alpha: float = ALPHA, beta: float = BETA) -> torch.Tensor:
    """``α + (β − α)(1 − min(d, τ)/τ)`` elementwise."""
    return alpha + (beta - alpha) * (1.0 - torch.clamp(dist, max=tau) / tau)


def _weighted_bce(logits: torch.Tensor, target: torch.Tensor, fg_dist: torch.Tensor,
                  bg_dist: torch.Tensor | None) -> torch.Tensor:
    obj = target == 1
    valid = target != IGNORE
    fg_w = click_weight(fg_dist)
    bg_w = click_weight(bg_dist) if bg_dist is not None else torch.full_like(fg_w, ALPHA)
    weight = torch.where(obj, fg_w, bg_w) * valid
    bce = F.binary_cross_entropy_with_logits(logits.float(), obj.float(), reduction="none")
    return (bce * weight).mean()


def click_loss(logits: torch.Tensor, first_logits: torch.Tensor, target: torch.Tensor, pos_dist: torch.Tensor,
               neg_dist: torch.Tensor, first_dist: torch.Tensor) -> torch.Tensor:
    """Total click loss: weighted BCE of the main head plus that of the first-click head.

    Args:
        logits: main-head logits, B×1×H×W.
        first_logits: first-click-head logits, B×1×H×W.
        target: B×1×H×W with 0 background, 1 object, 255 ignore.
        pos_dist, neg_dist, first_dist: distance maps (pixels, 255 = no click), B×1×H×W.
    """
    if not (logits.shape == first_logits.shape == target.shape == pos_dist.shape):
        raise ValueError(f"shape mismatch: logits {tuple(logits.shape)}, first {tuple(first_logits.shape)}, "
                         f"target {tuple(target.shape)}, distances {tuple(pos_dist.shape)}")
    main = _weighted_bce(logits, target, pos_dist, neg_dist)
    first = _weighted_bce(first_logits, target, first_dist, None)
    return main + first
