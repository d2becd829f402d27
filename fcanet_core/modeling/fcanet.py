"""FCA-Net: a DeepLabv3+ network whose ASPP also sees a first-click branch.

The network takes distance maps and turns them into Gaussians itself
(exp(−4·ln2·d²/σ²), σ = 10 for positive/negative clicks, 30 for the first click).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .heads import ASPP, Decoder, FirstClickBranch, PredictionHead, resize_to

#: 4·ln 2 with the digits the official code uses.
FOUR_LN2 = 2.772588722


def gaussian_from_distance(dist: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian whose full width at half maximum is ``sigma`` pixels."""
    return torch.exp(-FOUR_LN2 * dist * dist / (sigma * sigma))


@dataclass(frozen=True)
class HeadConfig:
    """Channel widths of the heads; the defaults are the published network's."""

    first_widths: Sequence[int] = (256, 256, 256, 512, 512, 512)
    first_strides: Sequence[int] = (2, 1, 1, 2, 1, 1)
    aspp_channels: int = 256
    aspp_rates: Sequence[int] = (1, 6, 12, 18)
    side_channels: int = 48
    decoder_channels: int = 256
    pred_channels: int = 128
    first_pred_channels: int = 256
    sigma_click: float = 10.0
    sigma_first: float = 30.0


class FCANet(nn.Module):
    """FCA-Net over a split backbone.

    Args:
        backbone_pre: 5-channel input (RGB/255, positive and negative Gaussians) → low-level
            features at stride 4 with ``low_channels`` channels.
        backbone_last: low-level features → high-level features at stride 16 with
            ``high_channels`` channels.
        heads: widths of the heads.
    """

    def __init__(self, backbone_pre: nn.Module, backbone_last: nn.Module, low_channels: int,
                 high_channels: int, heads: HeadConfig = HeadConfig()) -> None:
        super().__init__()
        self.heads = heads
        # Registration order equals the official module's, so state_dict keys come out in its order.
        self.backbone_pre = backbone_pre
        self.backbone_last = backbone_last
        first_out = heads.first_widths[-1]
        self.my_aspp = ASPP(first_out + high_channels, heads.aspp_channels, heads.aspp_rates)
        self.my_decoder = Decoder(low_channels, heads.aspp_channels, heads.side_channels, heads.decoder_channels)
        self.pred_decoder = PredictionHead(heads.decoder_channels, heads.pred_channels)
        self.first_conv = FirstClickBranch(low_channels + 1, heads.first_widths, heads.first_strides)
        self.first_pred_decoder = PredictionHead(first_out, heads.first_pred_channels)

    def _features(self, image: torch.Tensor, pos_dist: torch.Tensor, neg_dist: torch.Tensor,
                  first_dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = gaussian_from_distance(pos_dist, self.heads.sigma_click)
        neg = gaussian_from_distance(neg_dist, self.heads.sigma_click)
        first = gaussian_from_distance(first_dist, self.heads.sigma_first)
        low = self.backbone_pre(torch.cat([image, pos, neg], dim=1))
        high = self.backbone_last(low)
        first_feat = self.first_conv(torch.cat([low, resize_to(first, low.shape[2:])], dim=1))
        merged = self.my_decoder(self.my_aspp(torch.cat([first_feat, high], dim=1)), low)
        return merged, first_feat

    def forward(self, image: torch.Tensor, pos_dist: torch.Tensor, neg_dist: torch.Tensor,
                first_dist: torch.Tensor) -> torch.Tensor:
        """Logits B×1×H×W for image B×3×H×W (RGB/255) and distance maps B×1×H×W (pixels, ≤ 255)."""
        merged, _ = self._features(image, pos_dist, neg_dist, first_dist)
        return resize_to(self.pred_decoder(merged), image.shape[2:])

    def forward_with_first_head(self, image: torch.Tensor, pos_dist: torch.Tensor, neg_dist: torch.Tensor,
                                first_dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training forward: (main logits, first-click head logits), both B×1×H×W."""
        merged, first_feat = self._features(image, pos_dist, neg_dist, first_dist)
        size = image.shape[2:]
        return resize_to(self.pred_decoder(merged), size), resize_to(self.first_pred_decoder(first_feat), size)
