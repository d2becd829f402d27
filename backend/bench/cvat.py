"""The cost of one CVAT interactor call, phase by phase, at given frame sizes.

::

    python -m backend.cvat_bench [--sizes 683x512,1920x1080] [--repeat 5] [--images DIR] [--json OUT]

Each frame is a real image (the first sample of ``DIR``, default the shared GrabCut set) resized to the size and stored as
JPEG, the way an image task hands CVAT's function the original file. The click is the robot
user's first click on the resized ground truth. Phases of the function's in-process path:

* ``decode``: request body → base64 → RGB image (:func:`backend.cvat.interactor.parse_request` and
  :class:`~backend.images.frames.FrameDecoder` without its cache);
* ``predict``: the engine with the backend's settings (model version, SIS, zoom, short side);
* ``encode``: the full-frame JSON mask (:func:`backend.cvat.interactor.mask_json`); ``naive_encode`` is
  ``json.dumps({"mask": mask.tolist()})`` for comparison;
* ``call``: one whole :meth:`~backend.cvat.interactor.CvatInteractor.answer` with the frame cache off (a
  new frame), and ``call_cached`` with it on (CVAT resends the frame with every click).

Settings come from the environment (``FCANET_CHECKPOINT``, ``DEVICE``, ``TORCH_THREADS``, ...;
``REDIS_URL`` is ignored). The JSON report (``--json`` writes it, stdout always gets it)::

    {"model_version", "device", "torch_threads", "repeat", "machine": {"cpu", "cores", "platform"},
     "frames": [{"size", "image_bytes", "response_bytes", "decode_ms", "predict_ms", "encode_ms",
                 "naive_encode_ms", "call_ms", "call_cached_ms", "encode_to_predict"}]}

Times are medians over ``--repeat`` runs, in milliseconds.
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import io
import json
import logging
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from fcanet_core import next_click
from fcanet_core.cli import machine_info, run_report, timing_summary
from fcanet_core.data.datasets import load_samples

from ..config import Settings, get_settings
from ..cvat.interactor import CvatInteractor, mask_json, parse_request
from ..images.frames import get_frame_decoder, place_prompt
from ..inference.engine import get_engine
from .load import DEFAULT_IMAGES

DEFAULT_SIZES = "683x512,1920x1080"
JPEG_QUALITY = 90

logger = logging.getLogger(__name__)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"683x512,1920x1080"`` → ``[(683, 512), (1920, 1080)]`` (width × height)."""
    sizes = []
    for item in text.split(","):
        width, _, height = item.strip().lower().partition("x")
        size = (int(width), int(height))
        if min(size) < 1:
            raise ValueError(f"frame size {item!r} is empty")
        sizes.append(size)
    return sizes


def make_frame(image: np.ndarray, gt: np.ndarray, size: tuple[int, int]) -> dict:
    """A CVAT interactor body: ``image`` resized to ``size`` as JPEG, the robot's first click."""
    frame = Image.fromarray(image).resize(size, Image.BILINEAR)
    buffer = io.BytesIO()
    frame.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    resized_gt = np.asarray(Image.fromarray(gt).resize(size, Image.NEAREST))
    click = next_click(np.zeros_like(resized_gt), resized_gt)
    return {"image": base64.b64encode(buffer.getvalue()).decode(), "pos_points": [[click.x, click.y]],
            "neg_points": [], "obj_bbox": None}


def median_ms(run: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``run()`` over ``repeat`` calls, in milliseconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return timing_summary(times, in_ms=True)["median"]


def measure_frame(body: dict, settings: Settings, repeat: int) -> dict:
    """Phase times of one frame (module docstring); ``settings`` without ``REDIS_URL``."""
    uncached = dataclasses.replace(settings, image_cache_size=0)
    cold, warm = CvatInteractor(uncached), CvatInteractor(settings)
    engine = get_engine(settings)

    def decode() -> np.ndarray:
        request = parse_request(body, settings.max_image_bytes)
        return get_frame_decoder(uncached).decode(request.image)[0]

    image = decode()
    request = parse_request(body, settings.max_image_bytes)
    clicks, _ = place_prompt(request.clicks, None, image.shape[1], image.shape[0])
    mask, _ = engine.segment(image, clicks)
    status, text = warm.answer(body)
    if status != 200:
        raise RuntimeError(f"the interactor answered {status}: {text[:300]}")
    predict_ms = median_ms(lambda: engine.segment(image, clicks), repeat)
    encode_ms = median_ms(lambda: mask_json(mask), repeat)
    return {
        "size": f"{image.shape[1]}x{image.shape[0]}",
        "image_bytes": len(request.image),
        "response_bytes": len(text),
        "decode_ms": median_ms(decode, repeat),
        "predict_ms": predict_ms,
        "encode_ms": encode_ms,
        "naive_encode_ms": median_ms(lambda: json.dumps({"mask": (mask * 255).tolist()}), repeat),
        "call_ms": median_ms(lambda: cold.answer(body), repeat),
        "call_cached_ms": median_ms(lambda: warm.answer(body), repeat),
        "encode_to_predict": round(encode_ms / predict_ms, 3),
    }


def run_bench(sizes: Sequence[tuple[int, int]], repeat: int, images: Path = DEFAULT_IMAGES) -> dict:
    """Measure every size on the first sample of ``images`` (module docstring); the report."""
    settings = dataclasses.replace(get_settings(), redis_url=None)
    image, gt = load_samples(images, limit=1)[0].load()
    frames = [measure_frame(make_frame(image, gt, size), settings, repeat) for size in sizes]
    engine = get_engine(settings)
    return {"model_version": engine.model_version, "device": engine.device, "torch_threads": torch.get_num_threads(),
            "repeat": repeat, "machine": machine_info(), "frames": frames}


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m backend.cvat_bench``."""
    parser = argparse.ArgumentParser(prog="python -m backend.cvat_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes(DEFAULT_SIZES),
                        help=f"frame sizes WxH, comma separated (default {DEFAULT_SIZES})")
    parser.add_argument("--repeat", type=int, default=5, help="runs per phase (median reported)")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES,
                        help="dataset folder (index.csv or an official layout); its first sample is used "
                             "(default: the shared GrabCut set)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench and print the JSON report; exit 2 on bad arguments."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return run_report(lambda: run_bench(args.sizes, args.repeat, args.images), args.json, logger)


if __name__ == "__main__":
    sys.exit(main())
