"""Reading and writing FCA-Net weights.

Two on-disk formats are read, both with ``torch.load(weights_only=True)``:

* the **official** checkpoints (``fcanet-resnet.pth``, ``fcanet-res2net.pth``): a plain
  state_dict; the architecture is recognised from its keys and the load is strict;
* the **project** checkpoint: ``{"format": "fcanet_core.checkpoint", "format_version": 1,
  "arch": ..., "state_dict": {...} (fp16 or fp32), "meta": {...}}``.

Saves are atomic: a temporary file in the target folder is written, flushed to disk and
renamed over the target, so a crash never leaves a half-written checkpoint behind.
"""
from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from ..atomic import atomic_write
from . import MODEL_BUILDERS, FCANet, build_model
from .bundled import bundled_model_path

logger = logging.getLogger(__name__)

FORMAT = "fcanet_core.checkpoint"
FORMAT_VERSION = 1
#: The bundled default model (the trained ``lite0``), shipped with the package.
DEFAULT_CHECKPOINT = bundled_model_path()

#: Keys that only one official backbone has.
_SIGNATURE_KEYS = {
    "resnet101": "backbone_pre.layer1.0.conv2.weight",
    "res2net101": "backbone_pre.layer1.0.convs.0.weight",
}


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The file behind ``path``; ``"default"`` names the bundled model."""
    return DEFAULT_CHECKPOINT if str(path) == "default" else Path(path)


def infer_arch(keys: Iterable[str]) -> str:
    """The official architecture whose state_dict has these keys.

    Raises:
        ValueError: if the keys belong to neither official FCA-Net.
    """
    keys = set(keys)
    for arch, signature in _SIGNATURE_KEYS.items():
        if signature in keys:
            return arch
    sample = ", ".join(sorted(keys)[:5]) or "none"
    raise ValueError(f"not an FCA-Net state_dict: no ResNet-101 or Res2Net-101 backbone keys (first keys: {sample})")


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> FCANet:
    """Load an official or project checkpoint as an eval-mode fp32 FCA-Net.

    Args:
        path: checkpoint file, or ``"default"`` for the bundled ``lite0`` model.
        device: where to put the model.

    Returns:
        The model, with attributes ``arch`` (architecture name) and ``meta`` (training
        metadata; ``{"source": "official"}`` for an official file).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is not a checkpoint, or its weights do not fit its architecture.
    """
    file = resolve_checkpoint(path)
    if not file.is_file():
        hint = " (the bundled default model has not been built: train it first)" if file == DEFAULT_CHECKPOINT else ""
        raise FileNotFoundError(f"checkpoint {file} not found{hint}")
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{file} is not a readable checkpoint: {exc}") from exc
    arch, state_dict, meta = _unpack(obj, file)
    model = build_model(arch)
    state_dict = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"weights in {file} do not fit architecture {arch!r}: {exc}") from exc
    model.arch, model.meta = arch, meta
    label = meta.get("version") or meta.get("name") or meta.get("source") or "no version in its metadata"
    logger.info("loaded %s (%s) from %s", arch, label, file)
    return model.to(device).eval()


def _unpack(obj: Any, file: Path) -> tuple[str, dict[str, torch.Tensor], dict[str, Any]]:
    """(arch, state_dict, meta) of a loaded project checkpoint or official state_dict."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{file} holds a {type(obj).__name__}, not a checkpoint")
    if obj.get("format") == FORMAT:
        if obj.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{file} has checkpoint format version {obj.get('format_version')!r}; "
                             f"this library reads version {FORMAT_VERSION}")
        arch = obj.get("arch")
        if arch not in MODEL_BUILDERS:
            raise ValueError(f"{file} names unknown architecture {arch!r}; known: {sorted(MODEL_BUILDERS)}")
        state_dict = obj.get("state_dict")
        if not isinstance(state_dict, Mapping):
            raise ValueError(f"{file} is a project checkpoint without a state_dict")
        return arch, dict(state_dict), dict(obj.get("meta") or {})
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ValueError(f"{file} is neither a project checkpoint nor a plain state_dict")
    state_dict = {k.removeprefix("module."): v for k, v in obj.items()}
    return infer_arch(state_dict), state_dict, {"source": "official"}


def save_checkpoint(path: str | os.PathLike, model: nn.Module, arch: str, meta: Mapping[str, Any],
                    half: bool = False) -> Path:
    """Write ``model``'s weights as a project checkpoint, atomically.

    Args:
        path: target file; its folder is created if needed.
        model: an unfused FCA-Net of architecture ``arch``.
        arch: ``"lite0"``, ``"resnet101"`` or ``"res2net101"``.
        meta: JSON-serialisable training metadata (version name, data, recipe, steps,
            metrics, ...); ``created`` (UTC, ISO 8601) is added when missing.
        half: store floating-point tensors as fp16 (half the size; loaded back as fp32).

    Returns:
        The path written.

    Raises:
        ValueError: for an unknown ``arch``, a BN-folded model or non-JSON ``meta``.
    """
    if arch not in MODEL_BUILDERS:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(MODEL_BUILDERS)}")
    if getattr(model, "fused_for_inference", False):
        raise ValueError("a BN-folded inference model cannot be saved; save the original model")
    meta = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **meta}
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint meta must be JSON-serialisable: {exc}") from exc
    state_dict = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu()
        for k, v in model.state_dict().items()
    }
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "arch": arch,
               "state_dict": state_dict, "meta": meta}
    target = Path(path)
    atomic_save(payload, target)
    logger.info("saved %s checkpoint to %s", arch, target)
    return target


def atomic_save(obj: Any, target: str | Path) -> Path:
    """``torch.save`` ``obj`` to ``target`` atomically (see :func:`fcanet_core.atomic.atomic_write`)."""
    return atomic_write(target, lambda f: torch.save(obj, f))
