"""FCA-Net (CVPR 2020, "Interactive Image Segmentation with First Click Attention") as a library.

Public API: :class:`Click`, :func:`build_model`, :func:`load_model`, :class:`Predictor`,
:class:`Prediction`, :func:`apply_sis`, :func:`next_click`.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from .clicks import Click
from .model import build_model
from .robot import next_click
from .sis import apply_sis

_LAZY = {
    "load_model": ".checkpoint",
    "save_checkpoint": ".checkpoint",
    "Predictor": ".predictor",
    "Prediction": ".predictor",
}

__all__ = ["Click", "build_model", "next_click", "apply_sis", *_LAZY]


def __getattr__(name: str) -> Any:
    """Import the heavier parts (checkpoint I/O, predictor) on first use."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
