"""FCA-Net (CVPR 2020, "Interactive Image Segmentation with First Click Attention") as a library.

Public API: :class:`Click`, :func:`build_model`, :func:`load_model`, :class:`Predictor`,
:class:`Prediction`, :func:`apply_sis`, :func:`next_click`.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from .clicks import Click
from .evaluation.robot import next_click
from .inference.sis import apply_sis
from .modeling import build_model

_LAZY = {
    "load_model": ".modeling.checkpoint",
    "save_checkpoint": ".modeling.checkpoint",
    "Predictor": ".inference.predictor",
    "Prediction": ".inference.predictor",
}

__all__ = ["Click", "build_model", "next_click", "apply_sis", *_LAZY]


def __getattr__(name: str) -> Any:
    """Import the heavier parts (checkpoint I/O, predictor) on first use."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
