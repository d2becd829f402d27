"""Robot-user evaluation: NoC@85/90 and the mIoU-vs-clicks curve (the official FCA-Net protocol).

Every instance gets exactly ``max_clicks`` clicks from the robot user
(:func:`fcanet_core.evaluation.robot.next_click`), each followed by a prediction from scratch on the full
click list; the robot always clicks on the mask the predictor returned (after SIS when the
predictor applies it). NoC at a target is the first click count whose IoU reaches it, or
``max_clicks`` when none does.

CLI::

    python -m fcanet_core.evaluate --checkpoint PATH_OR_default --dataset DIR [--max-clicks 20]
        [--sis] [--zoom-in] [--flip] [--every K] [--limit N] [--json OUT.json] [--plot OUT.png] [--device cpu] [--target-iou T]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

import numpy as np
from tqdm import tqdm

from .clicks import Click
from .evaluation.robot import iou, next_click

logger = logging.getLogger(__name__)

#: The standard targets, by JSON key.
STANDARD_TARGETS = {"noc85": 0.85, "noc90": 0.90}


class MaskPrediction(Protocol):
    """What a predictor returns: at least a uint8 0/1 ``mask`` at the image's size."""

    @property
    def mask(self) -> np.ndarray: ...


class ClickPredictor(Protocol):
    """Anything with ``predict(image_rgb_uint8, clicks, prev_mask)``, e.g. :class:`fcanet_core.Predictor`.

    ``prev_mask`` is the mask of the previous click (``None`` before the first), as an annotation
    tool keeps it; predictors that do not zoom in may ignore it.
    """

    def predict(self, image: np.ndarray, clicks: Sequence[Click],
                prev_mask: np.ndarray | None = None) -> MaskPrediction: ...


class EvalSample(Protocol):
    """An instance to evaluate on, e.g. :class:`fcanet_core.data.datasets.Sample`."""

    @property
    def name(self) -> str: ...

    @property
    def image(self) -> np.ndarray:
        """RGB uint8 H×W×3."""

    @property
    def gt(self) -> np.ndarray:
        """uint8 H×W: 0 background, 1 object, 255 ignore."""


@dataclass(frozen=True)
class InstanceResult:
    """The robot's clicks on one instance and the IoU after each of them."""

    name: str
    clicks: tuple[Click, ...]
    ious: tuple[float, ...]

    def noc(self, target: float) -> int:
        """Number of clicks until the IoU first reaches ``target``; all clicks if it never does."""
        return next((k for k, value in enumerate(self.ious, start=1) if value >= target), len(self.ious))

    def to_dict(self, targets: dict[str, float]) -> dict[str, Any]:
        """JSON-ready: name, NoC per target key, IoUs and clicks as (x, y, is_positive) rows."""
        return {
            "name": self.name,
            **{key: self.noc(t) for key, t in targets.items()},
            "ious": list(self.ious),
            "clicks": [list(c.as_row()) for c in self.clicks],
        }


@dataclass(frozen=True)
class EvalResult:
    """Per-instance results of one evaluation run and the summary metrics derived from them."""

    instances: tuple[InstanceResult, ...]
    max_clicks: int
    spc: float  # mean seconds per click (prediction time only)

    @property
    def n(self) -> int:
        """Number of instances."""
        return len(self.instances)

    def noc(self, target: float) -> float:
        """Mean number of clicks to reach ``target`` IoU (``max_clicks`` for instances that never do)."""
        return float(np.mean([inst.noc(target) for inst in self.instances]))

    @property
    def noc85(self) -> float:
        """Mean NoC at IoU 0.85."""
        return self.noc(STANDARD_TARGETS["noc85"])

    @property
    def noc90(self) -> float:
        """Mean NoC at IoU 0.90."""
        return self.noc(STANDARD_TARGETS["noc90"])

    @property
    def miou_curve(self) -> list[float]:
        """Mean IoU after 1..max_clicks clicks."""
        return np.mean([inst.ious for inst in self.instances], axis=0).tolist()

    def to_dict(self, target_iou: float | None = None) -> dict[str, Any]:
        """JSON-ready metrics: n, noc85, noc90 (and ``noc_target`` for ``target_iou``), miou_curve,
        spc, max_clicks and the per-instance results."""
        targets = dict(STANDARD_TARGETS)
        if target_iou is not None:
            targets["noc_target"] = target_iou
        return {
            "n": self.n,
            **{key: self.noc(t) for key, t in targets.items()},
            "miou_curve": self.miou_curve,
            "spc": self.spc,
            "max_clicks": self.max_clicks,
            "instances": [inst.to_dict(targets) for inst in self.instances],
        }


def evaluate_instance(predictor: ClickPredictor, image: np.ndarray, gt: np.ndarray, max_clicks: int,
                      name: str = "") -> tuple[InstanceResult, float]:
    """Run the robot user for ``max_clicks`` clicks on one instance.

    Returns:
        The instance result and the total seconds spent in ``predictor.predict``.
    """
    if image.shape[:2] != gt.shape:
        raise ValueError(f"instance {name!r}: image is {image.shape[:2]} but ground truth is {gt.shape}")
    pred = np.zeros(gt.shape, dtype=np.uint8)
    clicks: list[Click] = []
    ious: list[float] = []
    seconds = 0.0
    for _ in range(max_clicks):
        clicks.append(next_click(pred, gt, clicks))
        start = time.perf_counter()
        pred = predictor.predict(image, list(clicks), prev_mask=pred if clicks[1:] else None).mask
        seconds += time.perf_counter() - start
        ious.append(iou(pred, gt))
    return InstanceResult(name, tuple(clicks), tuple(ious)), seconds


def evaluate(predictor: ClickPredictor, samples: Iterable[EvalSample], max_clicks: int = 20,
             progress: bool = False) -> EvalResult:
    """Evaluate a predictor with the robot user on every sample.

    Args:
        predictor: returns a mask for an image and a click list (apply SIS inside it if wanted).
        samples: instances with ``name``, ``image`` (RGB uint8) and ``gt`` (0/1/255).
        max_clicks: clicks per instance; every instance gets exactly this many.
        progress: show a progress bar on stderr.

    Returns:
        Per-instance IoUs and clicks with the derived NoC and mIoU curve.

    Raises:
        ValueError: ``max_clicks`` < 1, no samples, or an image and mask of different sizes.
    """
    if max_clicks < 1:
        raise ValueError(f"max_clicks must be at least 1, got {max_clicks}")
    results: list[InstanceResult] = []
    seconds = 0.0
    for sample in tqdm(samples, desc="evaluate", unit="instance", disable=not progress):
        result, spent = evaluate_instance(predictor, sample.image, sample.gt, max_clicks, sample.name)
        results.append(result)
        seconds += spent
        logger.debug("%s: NoC@90 %d, IoU@1 %.3f", sample.name, result.noc(0.90), result.ious[0])
    if not results:
        raise ValueError("nothing to evaluate: no samples")
    return EvalResult(tuple(results), max_clicks, seconds / (len(results) * max_clicks))


def plot_curve(curve: Sequence[float], path: str | Path, title: str = "") -> None:
    """Save the mIoU-vs-clicks curve (clicks 1..len(curve)) as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    clicks = np.arange(1, len(curve) + 1)
    ax.plot(clicks, curve, marker="o", markersize=3)
    ax.set(xlabel="clicks", ylabel="mIoU", ylim=(0.0, 1.0), xlim=(1, max(len(curve), 2)), title=title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the evaluation CLI's arguments (exits with a usage message on bad values)."""
    parser = argparse.ArgumentParser(prog="python -m fcanet_core.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help='checkpoint file, or "default" for the bundled model')
    parser.add_argument("--dataset", required=True, help="folder with index.csv or in an official layout")
    parser.add_argument("--max-clicks", type=int, default=20, help="clicks per instance (default 20)")
    parser.add_argument("--sis", action="store_true", help="apply the structural integrity strategy")
    parser.add_argument("--zoom-in", action="store_true",
                        help="predict on the region around the clicks and the previous mask (Predictor zoom_in)")
    parser.add_argument("--flip", action="store_true",
                        help="average the probabilities of the image and its mirror image")
    parser.add_argument("--every", type=int, default=1,
                        help="evaluate every K-th instance (an evenly spread subset; default 1 = all)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N instances")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--plot", type=Path, default=None, help="write the mIoU curve here (PNG)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--short-side", type=int, default=None,
                        help="network input short side (default: the model's own; 512 for the official networks)")
    parser.add_argument("--target-iou", type=float, default=None,
                        help="also report NoC at this IoU (noc_target)")
    args = parser.parse_args(argv)
    if args.max_clicks < 1:
        parser.error("--max-clicks must be at least 1")
    if args.every < 1:
        parser.error("--every must be at least 1")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.target_iou is not None and not 0.0 < args.target_iou <= 1.0:
        parser.error("--target-iou must lie in (0, 1]")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401  (the optional plot extra)
        except ImportError:
            parser.error("--plot needs matplotlib, which is not installed: pip install .[plot]")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = parse_args(argv)
    import torch

    from .cli import BAD_INPUT, EXIT_BAD_INPUT, EXIT_OK, setup_logging, write_json
    from .data.datasets import detect_layout, load_samples
    from .inference.predictor import Predictor
    from .modeling.checkpoint import load_model

    setup_logging()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {device}: no CUDA GPU is available; use --device cpu")
        samples = load_samples(args.dataset, args.limit, args.every)
        model = load_model(args.checkpoint, device)
    except (*BAD_INPUT, RuntimeError) as exc:  # bad folder, checkpoint or device name
        logger.error("%s", exc)
        return EXIT_BAD_INPUT
    predictor = Predictor(model, sis=args.sis, short_side=args.short_side, zoom_in=args.zoom_in,
                          flip_average=args.flip)
    result = evaluate(predictor, samples, args.max_clicks, progress=True)
    report = {
        "dataset": str(args.dataset),
        "layout": detect_layout(args.dataset),
        "checkpoint": args.checkpoint,
        "arch": model.arch,
        "device": device,
        "sis": args.sis,
        "zoom_in": args.zoom_in,
        "flip_average": args.flip,
        "short_side": predictor.short_side,
        "every": args.every,
        "limit": args.limit,
        "target_iou": args.target_iou,
        **result.to_dict(args.target_iou),
    }
    if args.json:
        write_json(report, args.json)
    if args.plot:
        title = f"{Path(args.dataset).name}: NoC@85 {result.noc85:.2f}, NoC@90 {result.noc90:.2f}"
        plot_curve(result.miou_curve, args.plot, title)
    summary = {k: v for k, v in report.items() if k != "instances"}
    sys.stdout.write(json.dumps(summary) + "\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
