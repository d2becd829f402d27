"""Assemble FCA-Net variants by name."""
from __future__ import annotations

from typing import Callable

from .fcanet import FCANet, HeadConfig


def build_resnet101() -> FCANet:
    """The published FCA-Net on ResNet-101 (official state_dict keys)."""
    from .resnet import resnet101_split

    pre, last = resnet101_split(in_channels=5)
    return FCANet(pre, last, low_channels=256, high_channels=2048, heads=HeadConfig())


def build_res2net101() -> FCANet:
    """The published FCA-Net on Res2Net-101-v1b 26w×4s (official state_dict keys)."""
    from .res2net import res2net101_split

    pre, last = res2net101_split(in_channels=5)
    return FCANet(pre, last, low_channels=256, high_channels=2048, heads=HeadConfig())


def build_lite0(pretrained: bool = False) -> FCANet:
    """The light CPU variant on EfficientNet-Lite0; ``pretrained`` loads its ImageNet weights."""
    from .lite0 import LITE0_HEADS, lite0_split

    pre, last, low, high = lite0_split(pretrained=pretrained)
    return FCANet(pre, last, low_channels=low, high_channels=high, heads=LITE0_HEADS)


MODEL_BUILDERS: dict[str, Callable[..., FCANet]] = {
    "resnet101": build_resnet101,
    "res2net101": build_res2net101,
    "lite0": build_lite0,
}


def build_model(name: str, **kwargs) -> FCANet:
    """Build an FCA-Net variant: ``"resnet101"``, ``"res2net101"`` or ``"lite0"``.

    Weights are random (BN at identity) unless a builder option such as ``pretrained=True``
    for ``lite0`` says otherwise; load checkpoints with :func:`fcanet_core.load_model`.
    """
    try:
        builder = MODEL_BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; choose one of {sorted(MODEL_BUILDERS)}") from None
    model = builder(**kwargs)
    model.arch = name  # what the predictor needs to know about its input scale
    return model
