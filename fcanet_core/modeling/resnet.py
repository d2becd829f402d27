"""ResNet-101 (v1.5, torchvision Bottleneck) split into FCA-Net's two backbone parts.

Output stride 16: stage strides 1, 2, 2, 1; layer4 is a multi-grid unit whose three
blocks use dilations 2, 4, 8. Submodule names equal torchvision's, so the official
FCA-Net checkpoints and torchvision's ImageNet weights map key for key.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

#: Blocks per stage of ResNet-101.
RESNET101_LAYERS = (3, 4, 23, 3)
#: Dilations of the three layer4 blocks (multi-grid 1, 2, 4 × base dilation 2).
LAYER4_DILATIONS = (2, 4, 8)


class Bottleneck(nn.Module):
    """1×1 → 3×3 (carries stride and dilation) → 1×1 ×4 channels, with a residual connection."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


def make_stage(in_channels: int, planes: int, stride: int, dilations: Sequence[int]) -> nn.Sequential:
    """One stage: a block per entry of ``dilations``; the first carries the stride and the downsample."""
    out_channels = planes * Bottleneck.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    blocks = [Bottleneck(in_channels, planes, stride, dilations[0], downsample)]
    blocks += [Bottleneck(out_channels, planes, 1, d) for d in dilations[1:]]
    return nn.Sequential(*blocks)


class ResNetPre(nn.Module):
    """Stem (7×7 conv s2, BN, ReLU, 3×3 max-pool s2) and layer1: in_channels → 256 at stride 4."""

    def __init__(self, in_channels: int = 5, blocks: int = RESNET101_LAYERS[0]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = make_stage(64, 64, 1, [1] * blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))


#: Builds one stage: (in_channels, planes, stride, dilation of each block) → blocks.
StageBuilder = Callable[[int, int, int, Sequence[int]], nn.Sequential]


class ResNetLast(nn.Module):
    """layer2 (stride 2), layer3 (stride 2), layer4 (dilated): 256 channels at stride 4 → 2048 at stride 16.

    ``stage`` builds the blocks: ResNet bottlenecks by default, Res2Net's for that backbone.
    """

    def __init__(self, layers: Sequence[int] = RESNET101_LAYERS,
                 layer4_dilations: Sequence[int] = LAYER4_DILATIONS, stage: StageBuilder | None = None) -> None:
        super().__init__()
        stage = stage or make_stage
        self.layer2 = stage(256, 128, 2, [1] * layers[1])
        self.layer3 = stage(512, 256, 2, [1] * layers[2])
        self.layer4 = stage(1024, 512, 1, layer4_dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(x)))


def init_backbone_weights(*modules: nn.Module) -> None:
    """He-normal convs (fan-out), BN at identity: the official initialisation."""
    for root in modules:
        for m in root.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def resnet101_split(in_channels: int = 5) -> tuple[ResNetPre, ResNetLast]:
    """ResNet-101 at output stride 16 as ``(backbone_pre, backbone_last)``.

    Args:
        in_channels: channels of the stem input (5 = RGB plus the two click maps).

    Returns:
        ``backbone_pre`` (B×in×H×W → B×256×H/4×W/4) and ``backbone_last``
        (B×256×H/4×W/4 → B×2048×H/16×W/16).
    """
    pre, last = ResNetPre(in_channels), ResNetLast()
    init_backbone_weights(pre, last)
    return pre, last
