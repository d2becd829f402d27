"""Every inference runtime of one model side by side, in one process and one run.

``python -m fcanet_core.bench --checkpoint default --runtimes all`` (see :mod:`fcanet_core.bench`).

Each candidate runs the same :class:`~fcanet_core.Predictor` path (resize, click encoding,
network, sigmoid, resize back) on the same synthetic scene; its logits are compared with torch
fp32 on the last click list. Candidates (:data:`CANDIDATES`):

* ``torch-fp32``: today's path (BN folded, channels-last);
* ``torch-bf16-autocast``: CPU bfloat16 autocast (lossy; emulated, hence slow, on CPUs without
  AVX512-BF16/AMX);
* ``ort-fp32``: the ONNX artefact in ONNX Runtime with all graph optimisations;
* ``ort-no-arena``, ``ort-io-binding``, ``ort-no-spinning``, ``ort-1-thread``: ONNX Runtime options;
* ``openvino-fp32``: the same artefact compiled by OpenVINO in fp32 with the latency hint (what
  ``FCANET_RUNTIME=openvino`` serves); ``openvino-fp32-no-hint``, ``openvino-1-thread``: its options;
* ``openvino-bf16``: OpenVINO's bfloat16 precision hint (lossy; only on CPUs with native bf16);
* ``ort-int8-static``: static QDQ int8 quantisation (per-channel weights) calibrated on training
  images (lossy). Not part of ``all``: its masks are far from fp32 (mask IoU 0.71 with the
  bundled model), so it is no candidate; name it to measure it.

A lossy candidate is reported, never made a default here: it would first have to keep NoC on
GrabCut and a validation split within 0.05 clicks (``python -m fcanet_core.evaluate``).
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..clicks import Click
from ..data.datasets import load_samples
from .onnx_export import export_onnx, inference_network
from .predictor import Predictor
from ..evaluation.robot import iou, next_click
from .openvino_network import OpenVinoNetwork
from .runtime import OnnxNetwork

logger = logging.getLogger(__name__)

#: Training images the int8 candidate is calibrated on (never the evaluation sets).
DEFAULT_CALIBRATION = Path(__file__).resolve().parents[3] / "shared" / "data" / "train" / "ecssd"


class Bf16Autocast:
    """A torch network run under CPU bfloat16 autocast, returning fp32 logits."""

    def __init__(self, network: nn.Module) -> None:
        self.network = network

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.network(*inputs).float()


@dataclass(frozen=True)
class Workspace:
    """What candidates are built from: the folded network, its fp32 ONNX file, calibration inputs."""

    network: nn.Module
    onnx_path: Path
    calibration: Callable[[], list[list[np.ndarray]]]


@dataclass(frozen=True)
class Candidate:
    """A runtime to measure: ``make(workspace) -> network`` (``None`` = the torch model itself)."""

    lossy: bool
    make: Callable[[Workspace], Callable[..., torch.Tensor] | None]
    channels_last: bool = False
    in_all: bool = True


def _int8_network(space: Workspace) -> OnnxNetwork:
    """Quantise the fp32 artefact statically (QDQ, per-channel weights) on the calibration inputs."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from .onnx_export import INPUT_NAMES

    class Reader(CalibrationDataReader):
        def __init__(self, batches: list[list[np.ndarray]]) -> None:
            self.feeds = iter([dict(zip(INPUT_NAMES, batch)) for batch in batches])

        def get_next(self) -> dict | None:
            return next(self.feeds, None)

    target = space.onnx_path.with_name("int8.onnx")
    quantize_static(str(space.onnx_path), str(target), Reader(space.calibration()), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return OnnxNetwork(target)


def _openvino_bf16_network(space: Workspace) -> OpenVinoNetwork:
    """OpenVINO with the bfloat16 precision hint, where the CPU computes bfloat16 natively."""
    from ..training.step import native_cpu_bf16

    if not native_cpu_bf16():
        raise RuntimeError("this CPU has no native bfloat16 (AVX512-BF16 or AMX)")
    return OpenVinoNetwork(space.onnx_path, precision="bf16")


CANDIDATES: dict[str, Candidate] = {
    "torch-fp32": Candidate(False, lambda s: None, channels_last=True),
    "torch-bf16-autocast": Candidate(True, lambda s: Bf16Autocast(s.network), channels_last=True),
    "ort-fp32": Candidate(False, lambda s: OnnxNetwork(s.onnx_path)),
    "ort-no-arena": Candidate(False, lambda s: OnnxNetwork(s.onnx_path, arena=False)),
    "ort-io-binding": Candidate(False, lambda s: OnnxNetwork(s.onnx_path, io_binding=True)),
    "ort-no-spinning": Candidate(False, lambda s: OnnxNetwork(s.onnx_path, spinning=False)),
    "ort-1-thread": Candidate(False, lambda s: OnnxNetwork(s.onnx_path, threads=1)),
    "openvino-fp32": Candidate(False, lambda s: OpenVinoNetwork(s.onnx_path)),
    "openvino-fp32-no-hint": Candidate(False, lambda s: OpenVinoNetwork(s.onnx_path, latency=False)),
    "openvino-1-thread": Candidate(False, lambda s: OpenVinoNetwork(s.onnx_path, threads=1)),
    "openvino-bf16": Candidate(True, _openvino_bf16_network),
    "ort-int8-static": Candidate(True, _int8_network, in_all=False),
}
#: What ``--runtimes all`` measures.
ALL_CANDIDATES = [name for name, candidate in CANDIDATES.items() if candidate.in_all]


def calibration_inputs(predictor: Predictor, data: str | Path, n_images: int) -> list[list[np.ndarray]]:
    """Network inputs of ``n_images`` training images, each with the robot user's first click."""
    batches = []
    for sample in load_samples(data, n_images):
        image, gt = sample.load()
        click = next_click(np.zeros(gt.shape, np.uint8), gt)
        batches.append([np.ascontiguousarray(t.numpy()) for t in predictor.network_inputs(image, [click])])
    return batches


def compare_runtimes(model: nn.Module, names: Sequence[str], image: np.ndarray, clicks: Sequence[Click],
                     repeats: int, time_clicks: Callable[[Predictor], dict], calibration: str | Path,
                     calibration_images: int) -> dict[str, dict]:
    """Time each named candidate with ``time_clicks(predictor)`` and compare it with torch fp32.

    Returns:
        ``{name: {"lossy", **timings, "max_rel_logit_diff", "mask_iou_vs_torch_fp32"}}``, or
        ``{name: {"error": ...}}`` for a candidate that could not be built here.
    """
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        raise ValueError(f"unknown runtime(s) {unknown}; choose from {', '.join(CANDIDATES)}")
    network = inference_network(model)
    reference = Predictor(network, device="cpu", fuse=False)
    with torch.inference_mode():
        expected = reference.model(*reference.network_inputs(image, clicks)).float().numpy()
    expected_mask = reference.predict(image, clicks).mask
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "fp32.onnx"
        if any(n.startswith(("ort-", "openvino-")) for n in names):
            export_onnx(network, onnx_path, "bench")
        space = Workspace(network, onnx_path, lambda: calibration_inputs(reference, calibration, calibration_images))
        for name in names:
            candidate = CANDIDATES[name]
            try:
                runner = candidate.make(space)
            except Exception as exc:               # a candidate this machine cannot build is reported, not fatal
                logger.warning("runtime %s unavailable: %s", name, exc)
                results[name] = {"lossy": candidate.lossy, "error": f"{type(exc).__name__}: {exc}"}
                continue
            predictor = Predictor(network, device="cpu", fuse=False, channels_last=candidate.channels_last,
                                  network=runner)
            with torch.inference_mode():
                logits = predictor.model(*predictor.network_inputs(image, clicks)).float().numpy()
            diff = float(np.abs(logits - expected).max()) / max(1.0, float(np.abs(expected).max()))
            results[name] = {"lossy": candidate.lossy, **time_clicks(predictor), "max_rel_logit_diff": diff,
                             "mask_iou_vs_torch_fp32": iou(predictor.predict(image, clicks).mask, expected_mask)}
            logger.info("%s: %.4f s per click", name, results[name]["seconds_per_click"]["median"])
    return results
