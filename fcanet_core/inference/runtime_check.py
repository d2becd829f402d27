"""Masks of a runtime against the torch fp32 path on real images: are they the same?

CLI (prints JSON; README quotes its result on the 50 GrabCut images)::

    python -m fcanet_core.inference.runtime_check --data ../shared/data/grabcut [--checkpoint default]
        [--runtime openvino|onnxruntime|auto] [--clicks 5] [--limit N] [--json out.json]

Per image a robot user (:func:`fcanet_core.next_click`) clicks on the errors of the torch mask;
both predictors get the same click list each time, and the IoU between their masks is recorded
(the first click's IoU is the acceptance figure). The artefact is exported to a temporary folder
unless ``--artefact`` names one.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..cli import run_report
from ..modeling.checkpoint import load_model, resolve_checkpoint
from ..clicks import Click
from ..data.datasets import load_samples
from .onnx_export import file_fingerprint
from .predictor import Predictor
from ..evaluation.robot import iou, next_click
from .runtime import RUNTIMES, build_predictor


logger = logging.getLogger(__name__)

def mask_agreement(reference: Predictor, candidate: Predictor, samples: Sequence, n_clicks: int) -> dict:
    """IoU between the two predictors' masks for the reference's robot-user click lists.

    Returns:
        ``{"images", "first_click_iou": {"min", "mean"}, "all_clicks_iou": {"min", "mean"},
        "per_image": [{"name", "ious"}]}``.
    """
    per_image = []
    for sample in samples:
        image, gt = sample.load()
        clicks: list[Click] = []
        mask = np.zeros(gt.shape, np.uint8)
        ious = []
        for _ in range(n_clicks):
            clicks.append(next_click(mask, gt, clicks))
            mask = reference.predict(image, clicks).mask
            other = candidate.predict(image, clicks).mask
            ious.append(1.0 if not mask.any() and not other.any() else iou(other, mask))
        per_image.append({"name": sample.name, "ious": [round(v, 6) for v in ious]})
    first = [p["ious"][0] for p in per_image]
    every = [v for p in per_image for v in p["ious"]]
    return {"images": len(per_image), "clicks": n_clicks,
            "first_click_iou": {"min": min(first), "mean": statistics.fmean(first)},
            "all_clicks_iou": {"min": min(every), "mean": statistics.fmean(every)}, "per_image": per_image}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: prints the JSON result; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m fcanet_core.inference.runtime_check", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="evaluation set (e.g. ../shared/data/grabcut)")
    parser.add_argument("--checkpoint", default="default", help="checkpoint file or 'default'")
    parser.add_argument("--runtime", choices=[r for r in RUNTIMES if r != "torch"], default="auto",
                        help="runtime compared with torch fp32 (default: what FCANET_RUNTIME=auto serves here)")
    parser.add_argument("--artefact", type=Path, help="ONNX artefact to use or write (default: a temporary one)")
    parser.add_argument("--clicks", type=int, default=5, help="robot clicks per image (default 5)")
    parser.add_argument("--limit", type=int, help="first N images only")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    return run_report(lambda: _check(args), args.json, logger)


def _check(args: argparse.Namespace) -> dict:
    """The agreement report of the runtime the command line names."""
    file = resolve_checkpoint(args.checkpoint)
    model = load_model(file)
    with tempfile.TemporaryDirectory() as tmp:
        artefact = args.artefact or Path(tmp) / "model.onnx"
        candidate, choice = build_predictor(model, runtime=args.runtime, artefact=artefact,
                                            fingerprint=file_fingerprint(file))
        if choice.fallback_reason:
            raise RuntimeError(f"the {args.runtime} runtime is not available: {choice.fallback_reason}")
        reference = Predictor(model)
        result = mask_agreement(reference, candidate, load_samples(args.data, args.limit), args.clicks)
    return {"checkpoint": str(args.checkpoint), "data": args.data, "runtime": choice.runtime, **result}


if __name__ == "__main__":
    sys.exit(main())
