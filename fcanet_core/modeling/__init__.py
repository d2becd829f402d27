"""FCA-Net networks: the published ResNet-101/Res2Net-101 variants and the light ``lite0``."""
from .build import MODEL_BUILDERS, build_model
from .fcanet import FCANet, HeadConfig

__all__ = ["FCANet", "HeadConfig", "MODEL_BUILDERS", "build_model"]
