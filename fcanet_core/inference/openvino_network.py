"""An exported FCA-Net (the ONNX artefact of :mod:`fcanet_core.inference.onnx_export`) compiled by OpenVINO.

OpenVINO reads the ONNX file directly; with ``precision="f32"`` (the default) its CPU plugin keeps
fp32 arithmetic, so the logits match torch's to ~1e-5 and the masks are the same. ``"bf16"`` lets
it run in bfloat16 on CPUs with native bf16 (lossy, measured only by ``python -m fcanet_core.bench``).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .onnx_export import FINGERPRINT_KEY, INPUT_NAMES

#: ``INFERENCE_PRECISION_HINT`` values accepted by :class:`OpenVinoNetwork`.
PRECISIONS = ("f32", "bf16")


def openvino_available() -> bool:
    """Whether the ``openvino`` package is installed."""
    return importlib.util.find_spec("openvino") is not None


class OpenVinoNetwork:
    """An ONNX artefact compiled for OpenVINO's CPU plugin, called like the torch network.

    Args:
        source: the ``.onnx`` file.
        threads: inference threads; 0 = torch's current thread count (one knob for all runtimes).
        precision: ``"f32"`` (exact) or ``"bf16"`` (lossy).
        latency: ``PERFORMANCE_HINT=LATENCY`` (one request at a time, as a click is) instead of
            OpenVINO's default.
    """

    def __init__(self, source: str | Path, threads: int = 0, precision: str = "f32", latency: bool = True) -> None:
        import openvino as ov

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        core = ov.Core()
        model = core.read_model(str(source))
        self._fingerprint = (model.get_rt_info(["framework", FINGERPRINT_KEY]).astype(str)
                             if model.has_rt_info(["framework", FINGERPRINT_KEY]) else None)
        config = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads or torch.get_num_threads()}
        if latency:
            config["PERFORMANCE_HINT"] = "LATENCY"
        self.request = core.compile_model(model, "CPU", config).create_infer_request()
        self.options = {"threads": config["INFERENCE_NUM_THREADS"], "precision": precision, "latency": latency}

    @property
    def fingerprint(self) -> str | None:
        """Fingerprint of the checkpoint the artefact was exported from."""
        return self._fingerprint

    def run_numpy(self, inputs: Sequence[torch.Tensor | np.ndarray]) -> np.ndarray:
        """Logits (N×1×H×W float32 ndarray) for the four network inputs."""
        feed = {name: np.ascontiguousarray(t.numpy() if isinstance(t, torch.Tensor) else t, dtype=np.float32)
                for name, t in zip(INPUT_NAMES, inputs)}
        return self.request.infer(feed)[0]        # a copy (share_outputs=False): safe after the next call

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Logits as a torch tensor, like the torch network's forward."""
        return torch.from_numpy(self.run_numpy([t.cpu() for t in inputs]))
