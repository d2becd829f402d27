"""Export an FCA-Net to ONNX (dynamic height and width) and check the export against torch.

CLI (writes the artefact the runtime would write at first use, and prints the check as JSON)::

    python -m fcanet_core.inference.onnx_export --checkpoint default [--to models/fcanet_lite0.onnx]

The exported network is the BN-folded inference network of :class:`fcanet_core.Predictor`, with
inputs ``image``, ``pos_dist``, ``neg_dist``, ``first_dist`` (N×C×H×W float32, H and W free) and
output ``logits``. Before the file is written its logits are compared with torch's on click maps
at several sizes; an export outside :data:`LOGIT_TOLERANCE` raises :class:`ExportError` and writes
nothing. The file carries the fingerprint of the checkpoint it came from (metadata
``fcanet_fingerprint``), so a stale artefact is recognised, and is written atomically.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_write
from ..cli import run_report
from ..clicks import Click, encode_clicks
from ..modeling.fuse import fuse_for_inference

logger = logging.getLogger(__name__)

INPUT_NAMES = ("image", "pos_dist", "neg_dist", "first_dist")
OUTPUT_NAME = "logits"
OPSET = 17
#: Metadata key holding the fingerprint of the source checkpoint.
FINGERPRINT_KEY = "fcanet_fingerprint"
#: Largest |logit difference| allowed, relative to max(1, largest |logit|) of the torch output.
LOGIT_TOLERANCE = 1e-3
#: Network input sizes (H, W) the export is checked at: odd sizes (rounding of every stride) and a
#: typical landscape input of the bundled model.
EXPORT_CHECK_SIZES = ((97, 131), (352, 469))
#: The quick check done whenever an existing artefact is loaded.
LOAD_CHECK_SIZES = ((97, 131),)


class ExportError(RuntimeError):
    """The network could not be exported, or the export does not reproduce torch's logits."""


def file_fingerprint(path: str | Path) -> str:
    """SHA-256 (hex) of a checkpoint file: what an artefact was exported from."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def probe_inputs(height: int, width: int, seed: int = 0) -> list[torch.Tensor]:
    """A random image and the distance maps of three clicks (two positive, one negative), as the predictor feeds them."""
    rng = np.random.default_rng(seed)
    image = torch.from_numpy(rng.random((1, 3, height, width), dtype=np.float32))
    clicks = [Click(width // 3, height // 2, True), Click(2 * width // 3, height // 3, False),
              Click(width // 2, 2 * height // 3, True)]
    maps = encode_clicks(clicks, height, width)
    return [image, *(torch.from_numpy(m)[None, None] for m in maps)]


def inference_network(model: nn.Module) -> nn.Module:
    """The BN-folded eval-mode network the predictor runs (``model`` itself if already folded)."""
    if getattr(model, "fused_for_inference", False):
        return model.eval()
    return fuse_for_inference(model)


def onnx_bytes(network: nn.Module, fingerprint: str) -> bytes:
    """The ONNX serialisation of ``network`` (CPU, fp32) with dynamic H/W, tagged with ``fingerprint``."""
    import onnx

    network = network.to("cpu").float().eval()
    dynamic = {name: {2: "height", 3: "width"} for name in (*INPUT_NAMES, OUTPUT_NAME)}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")            # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(network, tuple(probe_inputs(*EXPORT_CHECK_SIZES[0])), buffer,
                          input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME], dynamic_axes=dynamic,
                          opset_version=OPSET, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = FINGERPRINT_KEY, fingerprint
    return proto.SerializeToString()


def artefact_fingerprint(session: "object") -> str | None:
    """The source fingerprint stored in an ONNX Runtime session's model metadata (``None`` if absent)."""
    return session.get_modelmeta().custom_metadata_map.get(FINGERPRINT_KEY)


def compare_logits(run: "callable", network: nn.Module, sizes: Sequence[tuple[int, int]]) -> float:
    """Largest relative logit difference between ``run(inputs) -> ndarray`` and ``network`` over ``sizes``.

    Raises:
        ExportError: when a size is outside :data:`LOGIT_TOLERANCE` or the output shape differs.
    """
    worst = 0.0
    for height, width in sizes:
        inputs = probe_inputs(height, width)
        with torch.inference_mode():
            expected = network(*inputs).numpy()
        got = run(inputs)
        if got.shape != expected.shape:
            raise ExportError(f"exported network gives logits of shape {got.shape} at {height}x{width}, "
                              f"torch {expected.shape}")
        diff = float(np.abs(got - expected).max()) / max(1.0, float(np.abs(expected).max()))
        if not diff <= LOGIT_TOLERANCE:            # also catches NaN
            raise ExportError(f"exported network differs from torch at {height}x{width}: relative logit "
                              f"difference {diff:.3g} > {LOGIT_TOLERANCE:g}")
        worst = max(worst, diff)
    return worst


def export_onnx(model: nn.Module, path: str | Path, fingerprint: str,
                check_sizes: Sequence[tuple[int, int]] = EXPORT_CHECK_SIZES) -> dict:
    """Export ``model`` to ``path`` (atomically) after checking the export against torch.

    Returns:
        ``{"path", "seconds", "max_rel_logit_diff", "check_sizes", "bytes"}``.

    Raises:
        ExportError: the export failed or does not match torch; nothing is written.
    """
    from .runtime import OnnxNetwork

    started = time.perf_counter()
    network = inference_network(model).to("cpu")
    try:
        data = onnx_bytes(network, fingerprint)
        exported = OnnxNetwork(data)
    except ExportError:
        raise
    except Exception as exc:                       # tracer, exporter and ONNX Runtime errors have no common base
        raise ExportError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
    diff = compare_logits(exported.run_numpy, network, check_sizes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(data))
    report = {"path": str(path), "seconds": round(time.perf_counter() - started, 2), "max_rel_logit_diff": diff,
              "check_sizes": [list(s) for s in check_sizes], "bytes": len(data)}
    logger.info("exported ONNX artefact %s (relative logit difference %.2g)", path, diff)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    from ..modeling.checkpoint import load_model, resolve_checkpoint
    from .runtime import default_artefact_path

    parser = argparse.ArgumentParser(prog="python -m fcanet_core.inference.onnx_export", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="default", help="checkpoint file or 'default' (the bundled model)")
    parser.add_argument("--to", type=Path, help="artefact to write (default: next to the checkpoint, .onnx)")
    args = parser.parse_args(argv)

    def action() -> dict[str, object]:
        file = resolve_checkpoint(args.checkpoint)
        return export_onnx(load_model(file), args.to or default_artefact_path(file), file_fingerprint(file))

    return run_report(action, None, logger)


if __name__ == "__main__":
    sys.exit(main())
