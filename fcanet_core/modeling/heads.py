"""The FCA-Net heads shared by every backbone: first-click branch, ASPP, decoder, prediction head.

Attribute names and ``nn.Sequential`` indices follow the official implementation so that
the official checkpoints load strictly; channel widths are parameters so that the light
variant can shrink them.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def resize_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize with ``align_corners=True``, as every in-network resize of FCA-Net."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    """Conv (no bias) → BN → ReLU as a list, so callers keep the official Sequential indices."""
    padding = dilation * (kernel // 2)
    return [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    ]


class FirstClickBranch(nn.Module):
    """The first-click module: 3×3 conv-BN-ReLU layers over [low-level features ⊕ first-click map]."""

    def __init__(self, in_channels: int, widths: Sequence[int] = (256, 256, 256, 512, 512, 512),
                 strides: Sequence[int] = (2, 1, 1, 2, 1, 1)) -> None:
        super().__init__()
        chans = [in_channels, *widths]
        self.convs = nn.ModuleList(
            nn.Sequential(*conv_bn_relu(chans[i], chans[i + 1], 3, stride=s)) for i, s in enumerate(strides)
        )
        self.out_channels = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = conv(x)
        return x


class _ASPPBranch(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, rate: int) -> None:
        super().__init__()
        kernel = 1 if rate == 1 else 3
        self.atrous_conv = nn.Conv2d(in_ch, out_ch, kernel, padding=0 if rate == 1 else rate,
                                     dilation=rate, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.atrous_conv(x)))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: four dilated branches and image pooling, no dropout."""

    def __init__(self, in_channels: int, out_channels: int = 256, rates: Sequence[int] = (1, 6, 12, 18)) -> None:
        super().__init__()
        if len(rates) != 4:
            raise ValueError("ASPP takes exactly four rates")
        self.aspp1 = _ASPPBranch(in_channels, out_channels, rates[0])
        self.aspp2 = _ASPPBranch(in_channels, out_channels, rates[1])
        self.aspp3 = _ASPPBranch(in_channels, out_channels, rates[2])
        self.aspp4 = _ASPPBranch(in_channels, out_channels, rates[3])
        self.global_avg_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.conv1 = nn.Conv2d(out_channels * 5, out_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = resize_to(self.global_avg_pool(x), x.shape[2:])
        x = torch.cat([self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x), pooled], dim=1)
        return self.relu(self.bn1(self.conv1(x)))


class Decoder(nn.Module):
    """DeepLabv3+ decoder: upsample the ASPP output to the low-level grid and merge with a reduced skip."""

    def __init__(self, low_channels: int, aspp_channels: int = 256, side_channels: int = 48,
                 out_channels: int = 256) -> None:
        super().__init__()
        self.side_conv = nn.Sequential(*conv_bn_relu(low_channels, side_channels, 1))
        self.merge_conv = nn.Sequential(
            *conv_bn_relu(aspp_channels + side_channels, out_channels, 3),
            *conv_bn_relu(out_channels, out_channels, 3),
        )
        self.out_channels = out_channels

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        high = resize_to(high, low.shape[2:])
        return self.merge_conv(torch.cat([high, self.side_conv(low)], dim=1))


class PredictionHead(nn.Module):
    """Two 3×3 conv-BN-ReLU layers and a 1×1 conv to one logit map."""

    def __init__(self, in_channels: int, mid_channels: int) -> None:
        super().__init__()
        self.pred_conv = nn.Sequential(
            *conv_bn_relu(in_channels, mid_channels, 3),
            *conv_bn_relu(mid_channels, mid_channels, 3),
            nn.Conv2d(mid_channels, 1, 1, bias=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pred_conv(x)
