"""The runtime that runs the network of a :class:`~fcanet_core.Predictor`: torch, ONNX Runtime or OpenVINO.

* ``torch``: the BN-folded torch network in fp32 (channels-last on CPU).
* ``onnxruntime``: the model's ONNX artefact (:mod:`fcanet_core.inference.onnx_export`) in an ONNX Runtime
  CPU session; logits match torch to ~1e-5, so the masks are the same.
* ``openvino``: the same artefact compiled by OpenVINO's CPU plugin in fp32
  (:mod:`fcanet_core.inference.openvino_network`); logits match torch to ~1e-5 as well.
* ``auto``: on CPU the first installed of :data:`AUTO_ORDER` (the fastest exact runtime measured by
  ``python -m fcanet_core.bench --runtimes all``), else ``torch`` (on CUDA: ``torch``). Only exact
  runtimes are chosen: the lossy ones the bench measures (bfloat16, int8) are never a default.

:func:`build_predictor` opens the artefact (exporting it first when it is missing or was exported
from another checkpoint), checks it against torch, and falls back to torch with a logged reason
when anything fails; :class:`RuntimeChoice` says what serves and why.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .onnx_export import (INPUT_NAMES, LOAD_CHECK_SIZES, OUTPUT_NAME, ExportError, artefact_fingerprint,
                          compare_logits, export_onnx, inference_network)
from .openvino_network import OpenVinoNetwork, openvino_available
from .predictor import Predictor

logger = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnxruntime", "openvino")
#: Runtimes that run the ONNX artefact, in the order ``auto`` prefers them on CPU.
AUTO_ORDER = ("openvino", "onnxruntime")
#: File suffix of an ONNX artefact.
ARTEFACT_SUFFIX = ".onnx"


class ArtefactError(RuntimeError):
    """An ONNX artefact that cannot be loaded, or that does not reproduce its torch model."""


def onnxruntime_available() -> bool:
    """Whether the ``onnxruntime`` package is installed."""
    return importlib.util.find_spec("onnxruntime") is not None


def runtime_available(runtime: str) -> bool:
    """Whether the package of an artefact runtime (``onnxruntime`` | ``openvino``) is installed."""
    return openvino_available() if runtime == "openvino" else onnxruntime_available()


def resolve_runtime(requested: str, device: str | torch.device) -> str:
    """``auto`` → on CPU the first installed of :data:`AUTO_ORDER`, else ``torch``; other names are checked."""
    if requested not in RUNTIMES:
        raise ValueError(f"unknown runtime {requested!r}; choose from {', '.join(RUNTIMES)}")
    if requested != "auto":
        return requested
    if torch.device(device).type != "cpu":
        return "torch"
    return next((name for name in AUTO_ORDER if runtime_available(name)), "torch")


class OnnxNetwork:
    """An exported FCA-Net in an ONNX Runtime CPU session, called like the torch network.

    Args:
        source: ``.onnx`` file or its bytes.
        threads: intra-op threads; 0 = torch's current thread count (one knob for both runtimes).
        arena: ONNX Runtime's CPU memory arena (reuses buffers between calls).
        io_binding: run through an IO binding (inputs bound in place, output allocated by ONNX Runtime).
        spinning: let idle intra-op threads spin (lower latency, burns CPU between clicks).
    """

    def __init__(self, source: str | Path | bytes, threads: int = 0, arena: bool = True, io_binding: bool = False,
                 spinning: bool = True) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = arena
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        model = source if isinstance(source, bytes) else str(source)
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.io_binding = io_binding
        self.options = {"threads": options.intra_op_num_threads, "arena": arena, "io_binding": io_binding,
                        "spinning": spinning}

    @property
    def fingerprint(self) -> str | None:
        """Fingerprint of the checkpoint the artefact was exported from."""
        return artefact_fingerprint(self.session)

    def run_numpy(self, inputs: Sequence[torch.Tensor | np.ndarray]) -> np.ndarray:
        """Logits (N×1×H×W float32 ndarray) for the four network inputs."""
        feed = {name: np.ascontiguousarray(t.numpy() if isinstance(t, torch.Tensor) else t, dtype=np.float32)
                for name, t in zip(INPUT_NAMES, inputs)}
        if not self.io_binding:
            return self.session.run([OUTPUT_NAME], feed)[0]
        binding = self.session.io_binding()
        for name, array in feed.items():
            binding.bind_cpu_input(name, array)
        binding.bind_output(OUTPUT_NAME, "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Logits as a torch tensor, like the torch network's forward."""
        return torch.from_numpy(self.run_numpy([t.cpu() for t in inputs]))


@dataclass(frozen=True)
class RuntimeChoice:
    """What runs a predictor's network: ``runtime`` (``torch`` | ``onnxruntime`` | ``openvino``), the ``requested``
    setting, the ``artefact`` file, and why torch serves instead (``fallback_reason``)."""

    requested: str
    runtime: str
    artefact: str | None = None
    fallback_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (for logs and ``/health``)."""
        return asdict(self)


def default_artefact_path(checkpoint: str | Path) -> Path:
    """The artefact beside a checkpoint file (``model.pt`` → ``model.onnx``)."""
    return Path(checkpoint).with_suffix(ARTEFACT_SUFFIX)


def artefact_path_for(checkpoint: str | Path, fingerprint: str, fallback_dir: str | Path) -> Path:
    """Where a checkpoint's artefact is kept: beside it when it is there or the folder is writable
    (a registry version's folder, the bundled ``models/``), else ``fallback_dir/<stem>-<fingerprint>.onnx``."""
    checkpoint = Path(checkpoint)
    beside = default_artefact_path(checkpoint)
    if beside.exists() or os.access(checkpoint.parent, os.W_OK):
        return beside
    return Path(fallback_dir) / f"{checkpoint.stem}-{fingerprint[:12]}{ARTEFACT_SUFFIX}"


#: The classes that run an ONNX artefact, by runtime name.
ARTEFACT_NETWORKS = {"onnxruntime": OnnxNetwork, "openvino": OpenVinoNetwork}
#: Display names of the artefact runtimes in errors.
_RUNTIME_NAMES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


def open_artefact(network: nn.Module, path: str | Path, fingerprint: str, threads: int = 0,
                  runtime: str = "onnxruntime") -> OnnxNetwork | OpenVinoNetwork:
    """The checked ``runtime`` network of ``network``'s artefact at ``path`` (exported first when missing or stale).

    An artefact exported from another checkpoint (other fingerprint) is exported again; one that
    the runtime cannot load or that does not reproduce ``network`` on a probe raises
    :class:`ArtefactError` and is left in place (delete it to export again).

    Raises:
        ArtefactError: the existing artefact is broken.
        ExportError: exporting failed.
    """
    path = Path(path)
    make = ARTEFACT_NETWORKS[runtime]
    if path.is_file():
        try:
            loaded = make(path, threads)
        except Exception as exc:                   # the runtimes' load errors derive from Exception only
            reason = f"{_RUNTIME_NAMES[runtime]} cannot load {path}: {type(exc).__name__}: {exc}"
            raise ArtefactError(reason.strip()) from exc
        if loaded.fingerprint == fingerprint:
            try:
                compare_logits(loaded.run_numpy, network, LOAD_CHECK_SIZES)
            except ExportError as exc:
                raise ArtefactError(f"{path} does not reproduce its torch model: {exc}") from exc
            return loaded
        logger.info("ONNX artefact %s was exported from another checkpoint; exporting again", path)
    export_onnx(network, path, fingerprint)
    return make(path, threads)


def build_predictor(model: nn.Module, *, runtime: str = "auto", device: str | torch.device = "cpu",
                    artefact: str | Path | None = None, fingerprint: str | None = None,
                    **predictor_options: Any) -> tuple[Predictor, RuntimeChoice]:
    """A :class:`Predictor` for ``model`` on the requested runtime, falling back to torch.

    Args:
        model: an FCA-Net (unfolded or folded).
        runtime: one of :data:`RUNTIMES`.
        device: torch device of the torch runtime.
        artefact: where the ONNX artefact is kept (read, or written when missing/stale).
        fingerprint: identifies the model's weights (:func:`fcanet_core.inference.onnx_export.file_fingerprint`
            of its checkpoint); an artefact with another fingerprint is exported again.
        **predictor_options: ``sis``, ``short_side``, ``zoom_in``, ... of :class:`Predictor`.

    Returns:
        ``(predictor, choice)``; ``choice.fallback_reason`` is set when torch serves instead.
    """
    requested = runtime
    resolved = resolve_runtime(runtime, device)
    network = inference_network(model)
    reason = None
    if resolved in ARTEFACT_NETWORKS:
        if torch.device(device).type != "cpu":
            reason = f"{resolved} runs on the CPU here, the device is {device}"
        elif not runtime_available(resolved):
            reason = f"the {resolved} package is not installed"
        elif artefact is None or fingerprint is None:
            reason = "no artefact location or fingerprint was given for this model"
        else:
            try:
                artefact_network = open_artefact(network, artefact, fingerprint, runtime=resolved)
            except (ArtefactError, ExportError, OSError) as exc:
                reason = str(exc)
            else:
                predictor = Predictor(network, device="cpu", channels_last=False, network=artefact_network,
                                      **predictor_options)
                return predictor, RuntimeChoice(requested, resolved, str(artefact))
        logger.warning("falling back to the torch runtime: %s", reason)
    predictor = Predictor(network, device=device, fuse=False, **predictor_options)
    return predictor, RuntimeChoice(requested, "torch", str(artefact) if artefact else None, reason)
