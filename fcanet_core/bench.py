"""Seconds per click of an FCA-Net on this machine, or (``--train``) images/s of its training step.

``python -m fcanet_core.bench --arch resnet101 --size 512x683 --clicks 5 --repeats 3``
``python -m fcanet_core.bench --checkpoint default --runtimes all`` (every runtime side by side,
see :mod:`fcanet_core.inference.runtime_bench`)
``python -m fcanet_core.bench --train --config configs/lite0_main.py --steps 8`` (see
:mod:`fcanet_core.training.bench`)

Times the full predictor path (image resize, click encoding, network, sigmoid, resize back)
for click lists of growing length, as in an interactive session, and the network forward
alone; prints the result as JSON. CPU seconds of the process are reported too: on a shared
machine they vary less than wall time. Without ``--checkpoint`` the weights are random: the speed
of these networks does not depend on their weights.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .cli import machine_info, run_report, timing_summary
from .clicks import Click
from .inference.predictor import Predictor
from .inference.runtime_bench import ALL_CANDIDATES, CANDIDATES, DEFAULT_CALIBRATION, compare_runtimes
from .modeling import MODEL_BUILDERS, build_model
from .modeling.checkpoint import load_model
from .train import load_config
from .training.bench import VARIANTS, run_train_bench

logger = logging.getLogger(__name__)


def parse_size(text: str) -> tuple[int, int]:
    """``"512x683"`` → (height 512, width 683)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HEIGHTxWIDTH, e.g. 512x683, got {text!r}") from None
    if height < 16 or width < 16:
        raise argparse.ArgumentTypeError("size must be at least 16x16")
    return height, width


def synthetic_scene(height: int, width: int, n_clicks: int, seed: int = 0) -> tuple[np.ndarray, list[Click]]:
    """A smooth random RGB image and ``n_clicks`` clicks (first positive at the centre, then alternating)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    base = 127 + 60 * np.sin(xs[..., None] / 37.0 + ys[..., None] / 53.0 + np.arange(3))
    image = np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    clicks = [Click(width // 2, height // 2, True)]
    while len(clicks) < n_clicks:
        clicks.append(Click(int(rng.integers(width)), int(rng.integers(height)), len(clicks) % 2 == 0))
    return image, clicks


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def run_bench(model: torch.nn.Module, arch: str, size: tuple[int, int], device: str, n_clicks: int,
              repeats: int, fuse: bool = True, channels_last: bool = True) -> dict[str, object]:
    """Time ``repeats`` interactive sessions of ``n_clicks`` clicks, and the forward alone."""
    predictor = Predictor(model, device=device, fuse=fuse, channels_last=channels_last)
    image, clicks = synthetic_scene(*size, n_clicks)
    return {
        "arch": arch,
        "device": str(predictor.device),
        "input_size": list(size),
        "network_input_size": list(predictor.network_inputs(image, clicks[:1])[0].shape[2:]),
        "torch_threads": torch.get_num_threads(),
        "fused": fuse,
        "channels_last": channels_last,
        "clicks": n_clicks,
        "repeats": repeats,
        **time_clicks(predictor, image, clicks, repeats),
        "machine": machine_info(),
    }


def time_clicks(predictor: Predictor, image: np.ndarray, clicks: Sequence[Click], repeats: int) -> dict[str, dict]:
    """Wall and CPU seconds per click over ``repeats`` sessions of growing click lists, and the forward alone."""
    predictor.predict(image, clicks[:1])  # warm-up: first-call allocations and kernel selection
    per_click = [_timed(lambda: predictor.predict(image, clicks[:k]))
                 for _ in range(repeats) for k in range(1, len(clicks) + 1)]
    inputs = predictor.network_inputs(image, clicks)
    with torch.inference_mode():
        forward = [_timed(lambda: predictor.model(*inputs)) for _ in range(repeats)]
    result = {"seconds_per_click": timing_summary([wall for wall, _ in per_click]),
              "cpu_seconds_per_click": timing_summary([cpu for _, cpu in per_click]),
              "forward_seconds": timing_summary([wall for wall, _ in forward])}
    # what a click costs beyond the network: resize, click maps, sigmoid, resize back, threshold, SIS
    result["overhead_seconds_per_click"] = result["seconds_per_click"]["median"] - result["forward_seconds"]["median"]
    return result


def run_runtime_bench(model: torch.nn.Module, arch: str, size: tuple[int, int], n_clicks: int, repeats: int,
                      runtimes: Sequence[str], calibration: Path, calibration_images: int) -> dict[str, object]:
    """Every runtime in ``runtimes`` side by side on the CPU (:mod:`fcanet_core.inference.runtime_bench`)."""
    image, clicks = synthetic_scene(*size, n_clicks)
    results = compare_runtimes(model, runtimes, image, clicks, repeats,
                               lambda predictor: time_clicks(predictor, image, clicks, repeats),
                               calibration, calibration_images)
    return {"arch": arch, "device": "cpu", "input_size": list(size), "threads": torch.get_num_threads(),
            "clicks": n_clicks, "repeats": repeats, "runtimes": results, "machine": machine_info()}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: prints the JSON result; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m fcanet_core.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(MODEL_BUILDERS), default="lite0",
                        help="architecture with random weights (ignored with --checkpoint)")
    parser.add_argument("--checkpoint", help="checkpoint file or 'default' instead of random weights")
    parser.add_argument("--size", type=parse_size, default=(512, 683), help="image HEIGHTxWIDTH (default 512x683)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clicks", type=int, default=5, help="clicks per simulated session")
    parser.add_argument("--repeats", type=int, default=3, help="simulated sessions (and forward-only runs)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--no-fuse", action="store_true", help="keep BatchNorm layers separate")
    parser.add_argument("--no-channels-last", action="store_true", help="use the default memory format")
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    runtimes = parser.add_argument_group("runtimes side by side (--runtimes)")
    runtimes.add_argument("--runtimes",
                          help=f"'all' ({', '.join(ALL_CANDIDATES)}) or comma-separated, from: {', '.join(CANDIDATES)}")
    runtimes.add_argument("--calibration", type=Path, default=DEFAULT_CALIBRATION,
                          help="training images for int8 calibration (default %(default)s)")
    runtimes.add_argument("--calibration-images", type=int, default=16, help="images used to calibrate int8")
    train = parser.add_argument_group("training throughput (--train)")
    train.add_argument("--train", action="store_true", help="bench the training step instead of clicks")
    train.add_argument("--config", default="configs/lite0_main.py", help="training config (default %(default)s)")
    train.add_argument("--steps", type=int, default=8, help="timed steps per variant")
    train.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    train.add_argument("--variants", default=",".join(VARIANTS),
                       help="comma-separated step variants, the first one the reference (default: all)")
    args = parser.parse_args(argv)
    if args.clicks < 1 or args.repeats < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--clicks, --repeats and --steps must be at least 1, --warmup at least 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    return run_report(lambda: _run(args), args.json, logger)


def _run(args: argparse.Namespace) -> dict[str, object]:
    """The report the command line asks for."""
    if args.train:
        config = load_config(args.config)
        if args.threads:
            config = config.replace(num_threads=args.threads)
        result = run_train_bench(config, args.variants.split(","), args.steps, args.warmup, args.device)
        return {**result, "config": args.config, "machine": machine_info()}
    if args.checkpoint:
        model = load_model(args.checkpoint)
        arch = model.arch
    else:
        torch.manual_seed(0)
        model, arch = build_model(args.arch), args.arch
    if args.runtimes:
        names = ALL_CANDIDATES if args.runtimes == "all" else args.runtimes.split(",")
        result = run_runtime_bench(model, arch, args.size, args.clicks, args.repeats, names, args.calibration,
                                   args.calibration_images)
    else:
        result = run_bench(model, arch, args.size, args.device, args.clicks, args.repeats,
                           fuse=not args.no_fuse, channels_last=not args.no_channels_last)
    return {**result, "checkpoint": args.checkpoint}


if __name__ == "__main__":
    sys.exit(main())
