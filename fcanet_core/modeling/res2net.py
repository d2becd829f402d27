"""Res2Net-101 v1b 26w×4s split into FCA-Net's two backbone parts.

Deep stem (three 3×3 convs), Bottle2neck blocks with four scales of width w, average-pool
downsampling, output stride 16 with layer4 dilations 2, 4, 8. One deviation from stock
Res2Net is kept on purpose because FCA-Net's checkpoints were trained with it: a *stage*
block with stride 1 passes its last split through untouched instead of average-pooling it.
Names equal the Res2Net v1b checkpoints' (downsample = AvgPool 0, conv 1, BN 2).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .resnet import RESNET101_LAYERS, ResNetLast, init_backbone_weights

BASE_WIDTH = 26
SCALE = 4


class Bottle2neck(nn.Module):
    """1×1 → hierarchical 3×3 convs over ``scale`` channel groups → 1×1 ×4 channels, residual.

    In a *stage* block (first of a stage) the groups are convolved independently; otherwise each
    group first adds the previous group's output. The last group is passed through, except in a
    stage block with stride > 1, where it is average-pooled to the new resolution.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, stage: bool = False,
                 base_width: int = BASE_WIDTH, scale: int = SCALE) -> None:
        super().__init__()
        width = int(math.floor(planes * base_width / 64.0))
        self.width, self.stage = width, stage
        self.conv1 = nn.Conv2d(in_channels, width * scale, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.pool = nn.AvgPool2d(3, stride=stride, padding=1) if stage and stride > 1 else None
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
            for _ in range(scale - 1)
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(scale - 1))
        self.conv3 = nn.Conv2d(width * scale, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        groups = torch.split(self.relu(self.bn1(self.conv1(x))), self.width, dim=1)
        outs = []
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            sp = groups[i] if i == 0 or self.stage else sp + groups[i]
            sp = self.relu(bn(conv(sp)))
            outs.append(sp)
        last = groups[-1]
        outs.append(last if self.pool is None else self.pool(last))
        out = self.bn3(self.conv3(torch.cat(outs, dim=1)))
        return self.relu(out + residual)


def make_stage(in_channels: int, planes: int, stride: int, dilations: Sequence[int]) -> nn.Sequential:
    """One stage: a stage block (stride, downsample) followed by normal blocks, one per dilation."""
    out_channels = planes * Bottle2neck.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.AvgPool2d(stride, stride=stride, ceil_mode=True, count_include_pad=False),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    blocks = [Bottle2neck(in_channels, planes, stride, dilations[0], downsample, stage=True)]
    blocks += [Bottle2neck(out_channels, planes, 1, d) for d in dilations[1:]]
    return nn.Sequential(*blocks)


class Res2NetPre(nn.Module):
    """Deep stem (3×3 s2 → 3×3 → 3×3, BN, ReLU, max-pool s2) and layer1: in_channels → 256 at stride 4."""

    def __init__(self, in_channels: int = 5, blocks: int = RESNET101_LAYERS[0]) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, padding=1, bias=False),
        )
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = make_stage(64, 64, 1, [1] * blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))


def res2net101_split(in_channels: int = 5) -> tuple[Res2NetPre, ResNetLast]:
    """Res2Net-101 v1b 26w×4s at output stride 16 as ``(backbone_pre, backbone_last)``.

    Args:
        in_channels: channels of the stem input (5 = RGB plus the two click maps).

    Returns:
        ``backbone_pre`` (B×in×H×W → B×256×H/4×W/4) and ``backbone_last``
        (B×256×H/4×W/4 → B×2048×H/16×W/16).
    """
    pre, last = Res2NetPre(in_channels), ResNetLast(stage=make_stage)
    init_backbone_weights(pre, last)
    return pre, last
