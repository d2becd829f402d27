"""``FCANetBackend``: the model class in the label-studio-ml style (``predict``, ``fit``, ``model_version``).

It is cheap to build, as in label-studio-ml 2.x where a new instance serves each request: the
heavy state (model, image cache) lives in the runner's process-wide engine or in the workers.
"""
from __future__ import annotations

import functools
import logging
import time
from typing import Any

from ..common.errors import BackendError
from ..config import Settings
from ..inference.jobs import SegmentRequest
from ..inference.queueing import Runner
from ..learning import handle_event
from .client import Credentials
from .prompts import LabelConfig, parse_prompt
from .task_prediction import predict_task

logger = logging.getLogger(__name__)


class FCANetBackend:
    """Click-based interactive segmentation for Label Studio.

    Args:
        runner: where inference runs (queue or in-process), see :mod:`backend.inference.queueing`.
        settings: backend settings.
        label_config: the project's labeling config XML.
        credentials: Label Studio URL and token for task images (env settings already applied).
    """

    def __init__(self, runner: Runner, settings: Settings, label_config: str | None = None,
                 credentials: Credentials | None = None) -> None:
        self.runner = runner
        self.settings = settings
        self.label_config = label_config
        self.credentials = credentials or Credentials.resolve(settings)

    @property
    def model_version(self) -> str:
        """The model version answering predictions (the registry's current version)."""
        return self.runner.model_version

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict | list]:
        """One answer per task: a prediction ``{"result": [...], "score", "model_version"}``, or ``[]``.

        Args:
            tasks: Label Studio tasks (``id``, ``data``), checked by :func:`backend.web.validation.task_list`.
            context: ``{"result": [regions]}`` of an interactive request, or ``None``. Without
                context ("Retrieve predictions"), each task is segmented from the prompts stored in
                the task itself, as auto-annotation does; a task without prompts, whose image cannot
                be read or whose masks all come out empty gets ``[]`` (no prediction), so Label
                Studio stores nothing and asks again later instead of counting it as done.
            **kwargs: ``login``/``password`` Label Studio may send for task data; unused (images are
                fetched with the Label Studio token).
        """
        prompt = parse_prompt(context)
        config = LabelConfig(self.label_config or "")
        version = self.model_version
        deadline = time.monotonic() + self.settings.predict_request_timeout
        if prompt is None:
            return [self._predict_from_task_prompts(task, config, version, deadline) for task in tasks]
        output = config.output_for(prompt)
        predictions = []
        for task in tasks:
            request = SegmentRequest(image=config.image_reference(task, prompt.to_name), task_id=task.get("id"),
                                     credentials=self.credentials, clicks=prompt.clicks, box=prompt.box,
                                     output=output, model_version=version)
            predictions.append(self.runner.segment(request, deadline))
        return predictions

    def _predict_from_task_prompts(self, task: dict, config: LabelConfig, version: str,
                                   deadline: float) -> dict | list:
        """The prediction for a task from its stored prompts; ``[]`` (none) when it has none, fails,
        is empty or the request's ``PREDICT_REQUEST_TIMEOUT`` (``deadline``) has passed."""
        if time.monotonic() >= deadline:
            logger.warning("task %s: no prediction, PREDICT_REQUEST_TIMEOUT=%gs passed", task.get("id"),
                           self.settings.predict_request_timeout)
            return []
        try:
            segment = functools.partial(self.runner.segment, deadline=deadline)
            prediction = predict_task(task, config, segment, self.credentials, version)
        except BackendError as exc:
            logger.warning("task %s: no prediction from its prompts: %s", task.get("id"), exc)
            return []
        return prediction if prediction and prediction["result"] else []

    def fit(self, event: str, data: dict, **kwargs: Any) -> dict:
        """Handle a Label Studio webhook event (annotation saved, Start Training, ...).

        Delegates to :func:`backend.learning.handle_event`, which only records and enqueues, so
        the webhook answers well within Label Studio's 1 s limit.
        """
        return handle_event(event, data, self.settings)
