"""The process-wide model holder: loads the current model version once and segments with it.

Exactly one engine per process and model configuration (:func:`get_engine`): in a worker, or in
the web process when ``REDIS_URL`` is unset. The model is the registry's current version
(``ModelRegistry(MODEL_DIR).current()``); :meth:`InferenceEngine.reload_if_changed` swaps in a newly
promoted version (loaded beside the old one, which keeps serving until the swap). When the current
version's checkpoint cannot be loaded, at start or at a swap, the engine serves the last loadable
version (the one in use, or at start the latest earlier version, else the default), logs it at ERROR
once and says so in :meth:`InferenceEngine.runtime_state` (``not_serving``), which ``/health``
turns into a warning; the broken file is not read again until the pointer or the file changes. Predictions are
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
        self._unloadable: tuple | None = None
        self._not_serving: dict | None = None
        self._version, self._predictor, self._runtime = self._load_first()

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

    @property
    def not_serving(self) -> dict | None:
        """``{"version", "reason"}`` of the registry's current version while its checkpoint cannot be
        loaded and another version serves; ``None`` when the current version serves."""
        return self._not_serving

    def runtime_state(self) -> dict:
        """``{"model_version", "runtime", "requested", "artefact", "fallback_reason", "not_serving"}``
        of the version in use."""
        return {"model_version": self.model_version, **self._runtime.as_dict(), "not_serving": self._not_serving}

    def _load_first(self) -> tuple[ModelVersion, Predictor, RuntimeChoice]:
        """The current version; when it cannot be loaded, the latest earlier version that can."""
        current = self.registry.current()
        try:
            return self._load(current)
        except Exception as exc:  # noqa: BLE001 - whatever the file holds, an earlier version serves
            self._mark_unloadable(current, exc)
            failure = exc
        for version in self.registry.earlier_versions():
            try:
                loaded = self._load(version)
            except Exception as exc:  # noqa: BLE001 - try the next earlier one
                logger.error("an earlier model version cannot be loaded either",
                             extra={"model_version": version.name, "error": _reason(exc)})
                continue
            logger.error(f"SERVING {version.name} INSTEAD OF THE CURRENT VERSION {current.name}: its checkpoint "
                         "cannot be loaded; promote or roll back to a loadable version",
                         extra={"model_version": version.name, "current": current.name, "error": _reason(failure)})
            return loaded
        raise failure

    def _mark_unloadable(self, version: ModelVersion, exc: Exception) -> None:
        """Remember that ``version`` cannot be loaded (not read again before it changes); log it once."""
        self._unloadable = _identity(version)
        self._not_serving = {"version": version.name, "reason": _reason(exc)}
        logger.error("cannot load the registry's current model version", exc_info=exc,
                     extra={"current": version.name, "error": _reason(exc)})

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
            try:
                current = self.registry.current()
            except Exception:  # noqa: BLE001 - an unreadable pointer: the old model keeps serving
                logger.exception("cannot read the model registry; keeping the old model version",
                                 extra={"model_version": self._version.name})
                return False
            if current.name == self._version.name:
                self._not_serving = None                     # rolled back to the version in use
                return False
            if self._unloadable == _identity(current):
                return False
            try:
                loaded = self._load(current)
            except Exception as exc:  # noqa: BLE001 - whatever the file holds, the old model keeps serving
                self._mark_unloadable(current, exc)
                return False
            with self._lock:
                old = self._version.name
                self._version, self._predictor, self._runtime = loaded
                self._not_serving = None
            logger.info("model version switched", extra={"model_version": current.name, "old_version": old})
            return True

    def segment(self, image: np.ndarray, clicks: Sequence[Click], image_key: str | None = None,
                box: Box | None = None, stop: threading.Event | None = None) -> tuple[np.ndarray, float]:
        """Segment the object the clicks point at.

        Args:
            image: RGB uint8 H×W×3.
            clicks: clicks in image pixels, first click (positive) first.
            image_key: identifies the image across calls; with ``FCANET_ZOOM_IN`` the mask of the
                same clicks minus the last one is reused as the previous mask.
            box: optional region of interest (:meth:`fcanet_core.Predictor.predict`'s ``box``).
            stop: set by a caller that gave up: a click still waiting for the engine does not
                start, a running one ends at its next stage (:class:`PredictionStopped`).

        Returns:
            ``(mask, score)``: uint8 H×W 0/1 and the mean object probability inside the mask
            (0.0 for an empty mask).
        """
        clicks = list(clicks)
        with self._lock:
            previous = self._previous.get((image_key, tuple(clicks[:-1]))) if image_key else None
            pred = self._predictor.predict(image, clicks, prev_mask=previous,
                                           box=None if box is None else (box.x0, box.y0, box.x1, box.y1), stop=stop)
            prob, mask = pred.prob, pred.mask
        if image_key:
            self._previous.put((image_key, tuple(clicks)), mask)
        score = float(prob[mask > 0].mean()) if mask.any() else 0.0
        return mask, score


def _reason(exc: Exception) -> str:
    """A one-line reason for a failed load: the exception's type and first line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


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
