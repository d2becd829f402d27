"""``python -m backend evaluate``: the served model version measured with the robot user.

The predictor is the one a worker serves with (:class:`~backend.inference.engine.InferenceEngine`
on these settings: the registry's current version, its runtime, SIS, zoom-in, flip averaging and
input size), evaluated with the standard protocol of :func:`fcanet_core.evaluate.evaluate`, so users
measure on their own labelled images what the annotators get.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fcanet_core.data.datasets import detect_layout, load_samples
from fcanet_core.evaluate import evaluate, plot_curve

from ..config import Settings
from .engine import InferenceEngine


def evaluate_served(settings: Settings, dataset: str | Path, every: int = 1, limit: int | None = None,
                    max_clicks: int = 20, progress: bool = False) -> dict[str, Any]:
    """NoC@85/90 and the mIoU curve of the served version on ``dataset``.

    Args:
        settings: the backend's settings (which version, how it predicts).
        dataset: a folder :func:`fcanet_core.data.datasets.load_samples` reads.
        every: evaluate every ``every``-th instance; ``limit``: at most this many of those.
        max_clicks: robot clicks per instance.

    Returns:
        The fields of :meth:`fcanet_core.evaluate.EvalResult.to_dict` plus ``dataset``, ``layout``,
        ``model_version``, ``runtime`` and the served ``predictor`` options.

    Raises:
        ValueError: an unreadable dataset, or ``every``/``limit``/``max_clicks`` below 1
            (:func:`~fcanet_core.data.datasets.load_samples` checks the first two).
    """
    if max_clicks < 1:
        raise ValueError(f"max_clicks must be at least 1, got {max_clicks}")
    samples = load_samples(dataset, limit, every)
    engine = InferenceEngine(settings)
    result = evaluate(engine.predictor, samples, max_clicks, progress=progress)
    return {"dataset": str(dataset), "layout": detect_layout(dataset), "model_version": engine.model_version,
            "runtime": engine.runtime.as_dict(), "device": engine.device, "predictor": settings.predictor_options(),
            "every": every, "limit": limit, **result.to_dict()}


def plot_report(report: dict[str, Any], path: str | Path) -> None:
    """The report's mIoU curve as a PNG, titled with the dataset and its NoC."""
    title = f"{Path(report['dataset']).name} ({report['model_version']}): NoC@85 {report['noc85']:.2f}, " \
            f"NoC@90 {report['noc90']:.2f}"
    plot_curve(report["miou_curve"], path, title)
