"""A task's own prompts → one Label Studio prediction: used by auto-annotation and by ``/predict``
without context ("Retrieve predictions"), so both give the same masks.

Prompts of a task: the result regions of its newest annotation, draft or prediction (by
``updated_at``; on a tie annotation before draft before prediction) that holds keypoints or
rectangles. Cancelled annotations are ignored. Each region is one object, read by
:func:`backend.labelstudio.prompts.parse_prompt` on its own. Each object becomes one mask through the same
path as an interactive click (a ``segment`` callable: a runner's or :func:`backend.inference.jobs.run_segment`).
"""
from __future__ import annotations

from typing import Callable, Sequence

from fcanet_core import Click

from ..config import Settings
from ..images.fetch import get_fetcher
from ..inference.jobs import SegmentRequest
from .client import Credentials
from .prompts import LabelConfig, Prompt, parse_prompt
from .regions import KEYPOINT_TYPES, RECTANGLE_TYPES, PromptError

#: Where prompts are looked for, in tie-break order.
PROMPT_SOURCES = ("annotations", "drafts", "predictions")


def prompt_regions(task: dict) -> list[dict]:
    """Keypoint and rectangle regions of the task's newest annotation, draft or prediction holding any."""
    best: tuple[tuple[str, int], list[dict]] | None = None
    for rank, key in enumerate(PROMPT_SOURCES):
        for item in task.get(key) or []:
            if not isinstance(item, dict) or item.get("was_cancelled"):
                continue
            regions = [r for r in item.get("result") or []
                       if isinstance(r, dict) and r.get("type") in KEYPOINT_TYPES + RECTANGLE_TYPES]
            stamp = (str(item.get("updated_at") or item.get("created_at") or ""), -rank)
            if regions and (best is None or stamp > best[0]):
                best = (stamp, regions)
    return best[1] if best else []


def prompts_from_task(task: dict) -> list[Prompt]:
    """One prompt per object of the task: each positive keypoint, each rectangle (see module docstring).

    Raises:
        PromptError: a malformed region.
    """
    prompts = (parse_prompt({"result": [region]}) for region in prompt_regions(task))
    return [p for p in prompts if p is not None]


def center_prompt(task: dict, config: LabelConfig, settings: Settings, credentials: Credentials) -> Prompt:
    """A positive click at the centre of the task's image (the first image that has an output control)."""
    to_name = next((name for name in config.images if any(name in c.to_names for c in config.controls)), None)
    if to_name is None:
        raise PromptError("the labeling config has no BrushLabels or PolygonLabels control on an image")
    image = get_fetcher(settings).fetch(config.image_reference(task, to_name), task.get("id"), credentials)
    height, width = image.shape[:2]
    return Prompt((Click(width // 2, height // 2, True),), None, None, to_name, width, height)


def predict_prompts(task: dict, prompts: Sequence[Prompt], config: LabelConfig,
                    segment: Callable[[SegmentRequest], dict], credentials: Credentials,
                    model_version: str | None) -> dict:
    """One prediction with a mask per object prompt: every object's results, their mean score.

    Args:
        task: the Label Studio task (``id``, ``data``).
        prompts: one per object, e.g. from :func:`prompts_from_task`.
        config: the project's labeling config.
        segment: runs one click request, e.g. ``Runner.segment`` or
            ``functools.partial(backend.inference.jobs.run_segment, settings=...)``.
        credentials: Label Studio URL and token for the task image.
        model_version: the version expected to answer.

    Returns:
        ``{"result": [...], "score", "model_version"}`` (the version of the answers).
    """
    answers = [segment(SegmentRequest(image=config.image_reference(task, p.to_name), task_id=task.get("id"),
                                      credentials=credentials, clicks=p.clicks, box=p.box,
                                      output=config.output_for(p), model_version=model_version))
               for p in prompts]
    return {
        "result": [region for answer in answers for region in answer["result"]],
        "score": sum(a["score"] for a in answers) / len(answers) if answers else 0.0,
        "model_version": answers[0]["model_version"] if answers else model_version,
    }


def predict_task(task: dict, config: LabelConfig, segment: Callable[[SegmentRequest], dict],
                 credentials: Credentials, model_version: str | None) -> dict | None:
    """The prediction for a task from its own prompts (:func:`predict_prompts`), ``None`` without prompts.

    This is what ``/predict`` without context ("Retrieve predictions") should answer for a task
    that carries prompts, so that it gives the masks auto-annotation gives.
    """
    prompts = prompts_from_task(task)
    return predict_prompts(task, prompts, config, segment, credentials, model_version) if prompts else None
