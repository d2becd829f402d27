"""The process-wide model holder: loads the current model version once and segments with it.

Exactly one engine per process and model configuration (:func:`get_engine`): in a worker, or in
the web process when ``REDIS_URL`` is unset. The model is the registry's current version
(``ModelRegistry(MODEL_DIR).current()``); :meth:`InferenceEngine.reload_if_changed` swaps in a newly
promoted version (loaded beside the old one, which keeps serving until the swap). Predictions are
serialised by a lock, so gunicorn threads may share the engine. ``FCANET_RUNTIME`` picks what runs
the network (:mod:`fcanet_core.inference.runtime`): each version's ONNX artefact is kept beside its
checkpoint (or under ``MODEL_DIR/artefacts`` when that folder is read-only); :attr:`InferenceEngine.runtime`
says what serves and why torch serves instead when the artefact is broken.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from fcanet_core import Click, Predictor, load_model
from fcanet_core.modeling.checkpoint import resolve_checkpoint
from fcanet_core.inference.onnx_export import file_fingerprint
from fcanet_core.inference.runtime import RuntimeChoice, artefact_path_for, build_predictor

from ..common.lru import LRUCache
from ..config import Settings
from ..labelstudio.regions import Box
from ..storage.registry import ModelRegistry, ModelVersion

logger = logging.getLogger(__name__)

#: Previous masks kept for zoom-in (keyed by image and click list).
PREVIOUS_MASKS = 8


def resolve_device(name: str) -> str:
    """``"auto"`` → ``"cuda"`` when a GPU is usable, else ``"cpu"``; other names are checked."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"DEVICE={name!r} is not a torch device: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"DEVICE={name!r} but no CUDA GPU is available; use DEVICE=cpu or auto")
    return name


class InferenceEngine:
    """A loaded FCA-Net predictor for the registry's current model version.

    Args:
        settings: ``model_dir`` and ``fcanet_checkpoint`` (which model), ``device``, ``sis``,
            ``zoom_in``, ``short_side`` (how to predict).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = ModelRegistry(settings.model_dir, settings.fcanet_checkpoint)
        self.device = resolve_device(settings.device)
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._previous: LRUCache[np.ndarray] = LRUCache(PREVIOUS_MASKS if settings.zoom_in else 0)
        self._version, self._predictor, self._runtime = self._load(self.registry.current())
        self._unloadable: tuple | None = None

    @property
    def model_version(self) -> str:
        """Name of the model version in use."""
        return self._version.name

    @property
    def predictor(self) -> Predictor:
        """The predictor of the version in use, with the served options and runtime."""
        return self._predictor

    @property
    def runtime(self) -> RuntimeChoice:
        """What runs the network of the version in use (and why torch does, after a fallback)."""
        return self._runtime

    def runtime_state(self) -> dict:
        """``{"model_version", "runtime", "requested", "artefact", "fallback_reason"}`` of the version in use."""
        return {"model_version": self.model_version, **self._runtime.as_dict()}

    def _load(self, version: ModelVersion) -> tuple[ModelVersion, Predictor, RuntimeChoice]:
        started = time.perf_counter()
        checkpoint = resolve_checkpoint(version.checkpoint)
        model = load_model(checkpoint, self.device)
        fingerprint = file_fingerprint(checkpoint)
        predictor, runtime = build_predictor(
            model, runtime=self.settings.runtime, device=self.device,
            artefact=artefact_path_for(checkpoint, fingerprint, Path(self.settings.model_dir) / "artefacts"),
            fingerprint=fingerprint, **self.settings.predictor_options())
        logger.info("model loaded", extra={"model_version": version.name, "arch": model.arch, "device": self.device,
                                           "runtime": runtime.runtime, "fallback_reason": runtime.fallback_reason,
                                           "load_s": round(time.perf_counter() - started, 3)})
        return version, predictor, runtime

    def reload_if_changed(self) -> bool:
        """Load the registry's current version if it is not the one in use; True when swapped.

        A registry or checkpoint that cannot be read is logged and the old model keeps serving; a
        checkpoint that failed is not read again until the pointer or the file changes.
        """
        with self._reload_lock:
            current = None
            try:
                current = self.registry.current()
                if current.name == self._version.name or self._unloadable == _identity(current):
                    return False
                loaded = self._load(current)
            except Exception:  # noqa: BLE001 - whatever the file holds, the old model keeps serving
                if current is not None:
                    self._unloadable = _identity(current)   # not read again before it changes
                logger.exception("cannot load the registry's current model version; keeping the old one",
                                 extra={"model_version": self._version.name,
                                        "current": current.name if current else None})
                return False
            with self._lock:
                old = self._version.name
                self._version, self._predictor, self._runtime = loaded
            logger.info("model version switched", extra={"model_version": current.name, "old_version": old})
            return True

    def segment(self, image: np.ndarray, clicks: Sequence[Click], image_key: str | None = None,
                box: Box | None = None) -> tuple[np.ndarray, float]:
        """Segment the object the clicks point at.

        Args:
            image: RGB uint8 H×W×3.
            clicks: clicks in image pixels, first click (positive) first.
            image_key: identifies the image across calls; with ``FCANET_ZOOM_IN`` the mask of the
                same clicks minus the last one is reused as the previous mask.
            box: optional region of interest (:meth:`fcanet_core.Predictor.predict`'s ``box``).

        Returns:
            ``(mask, score)``: uint8 H×W 0/1 and the mean object probability inside the mask
            (0.0 for an empty mask).
        """
        clicks = list(clicks)
        with self._lock:
            previous = self._previous.get((image_key, tuple(clicks[:-1]))) if image_key else None
            pred = self._predictor.predict(image, clicks, prev_mask=previous,
                                           box=None if box is None else (box.x0, box.y0, box.x1, box.y1))
            prob, mask = pred.prob, pred.mask
        if image_key:
            self._previous.put((image_key, tuple(clicks)), mask)
        score = float(prob[mask > 0].mean()) if mask.any() else 0.0
        return mask, score


def _identity(version: ModelVersion) -> tuple:
    """A version's name and its checkpoint file's modification time (``None`` when unreadable)."""
    try:
        return version.name, os.stat(version.checkpoint).st_mtime_ns
    except OSError:
        return version.name, None


_ENGINES: dict[tuple, InferenceEngine] = {}
_ENGINES_LOCK = threading.Lock()


def apply_torch_threads(settings: Settings) -> None:
    """Apply ``TORCH_THREADS`` (when set) to this process: torch's thread pool is process-wide."""
    if settings.torch_threads > 0:
        torch.set_num_threads(settings.torch_threads)


def get_engine(settings: Settings) -> InferenceEngine:
    """The process-wide engine for these settings' model configuration (loaded on first use);
    applies ``TORCH_THREADS`` first."""
    apply_torch_threads(settings)
    key = (settings.model_dir, settings.fcanet_checkpoint, settings.device, settings.runtime,
           *settings.predictor_options().values())
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _ENGINES[key] = InferenceEngine(settings)
        return engine
