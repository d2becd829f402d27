"""Auto-annotation: prompts of a task, masks through the click path, and the batch on a real Redis and worker.

The Label Studio task API itself is exercised end to end in ``tests/e2e/test_autoannotate.py``;
here the image routes are served by ``ls_files``, which has no task API, so jobs that ask it for a
task fail the way they would against an unreachable or misconfigured Label Studio.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import redis
from rq import Queue

from backend.autoannotate import (DONE, FAILED, SKIPPED, BatchSummary, TaskFilter, TaskJob, TaskOutcome,
                                  center_prompt, claim_key, execute_batch, has_version, predict_task,
                                  prompts_from_task, task_claim)
from backend.bench.annotator import brush_mask
from backend.errors import BackendError
from backend.images import get_fetcher
from backend.inference import get_engine
from backend.jobs import run_segment
from backend.labelstudio import Credentials
from backend.prompts import LabelConfig, PromptError
from fcanet_core import Click

UPLOAD = "/data/upload/1/a6b80a50-disc.png"  # a 320×240 GrabCut image served by ``ls_files``
W, H = 320, 240
CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="tag" toName="image"><Label value="Object"/><Label value="Other"/></BrushLabels>
  <KeyPointLabels name="tag2" toName="image" smart="true"><Label value="Object"/><Label value="Other"/></KeyPointLabels>
  <RectangleLabels name="tag3" toName="image" smart="true"><Label value="Object"/></RectangleLabels>
</View>"""


def keypoint(x: float, y: float, positive: bool | None = None, label: str = "Object", kind: str = "keypointlabels") -> dict:
    """A keypoint region as Label Studio stores it (x/y in pixels here, percent in the region)."""
    value = {"x": x * 100 / W, "y": y * 100 / H, "width": 0.6}
    if kind == "keypointlabels":
        value["keypointlabels"] = [label]
    region = {"from_name": "tag2", "to_name": "image", "type": kind, "original_width": W,
              "original_height": H, "image_rotation": 0, "value": value}
    if positive is not None:
        region["is_positive"] = positive
    return region


def rectangle(x0: float, y0: float, x1: float, y1: float) -> dict:
    return {"from_name": "tag3", "to_name": "image", "type": "rectanglelabels", "original_width": W,
            "original_height": H, "image_rotation": 0,
            "value": {"x": x0 * 100 / W, "y": y0 * 100 / H, "width": (x1 - x0) * 100 / W,
                      "height": (y1 - y0) * 100 / H, "rotation": 0, "rectanglelabels": ["Object"]}}


def xy(prompts) -> list[list[tuple[float, float, bool]]]:
    """Click coordinates of each prompt, rounded (percent round trips are not exact)."""
    return [[(round(c.x, 6), round(c.y, 6), c.positive) for c in p.clicks] for p in prompts]


def brush() -> dict:
    return {"from_name": "tag", "to_name": "image", "type": "brushlabels", "original_width": W,
            "original_height": H, "value": {"format": "rle", "rle": [0], "brushlabels": ["Object"]}}


def task(annotations: list[dict] = (), drafts: list[dict] = (), predictions: list[dict] = (), task_id: int = 7) -> dict:
    return {"id": task_id, "data": {"image": UPLOAD}, "annotations": list(annotations), "drafts": list(drafts),
            "predictions": list(predictions)}


def item(result: list[dict], updated_at: str, **extra) -> dict:
    return {"result": result, "updated_at": updated_at, "created_at": updated_at, **extra}


# --------------------------------------------------------------------------------- prompts
def test_one_object_per_positive_keypoint_and_per_rectangle():
    regions = [keypoint(40, 50), keypoint(100, 60, positive=False), keypoint(200, 120, positive=True, label="Other"),
               rectangle(10, 20, 90, 120), brush(), keypoint(300, 10, kind="keypoint")]
    prompts = prompts_from_task(task([item(regions, "2026-01-01T00:00:00Z")]))
    assert xy(prompts) == [[(40, 50, True)], [(200, 120, True)], [(50, 70, True)], [(300, 10, True)]]
    assert [p.label for p in prompts] == ["Object", "Other", "Object", None]
    boxes = [p.box and tuple(round(v, 6) for v in (p.box.x0, p.box.y0, p.box.x1, p.box.y1)) for p in prompts]
    assert boxes == [None, None, (10, 20, 90, 120), None]
    assert {(p.to_name, p.width, p.height) for p in prompts} == {("image", W, H)}


def test_prompts_come_from_the_newest_annotation_draft_or_prediction():
    old_annotation = item([keypoint(10, 10)], "2026-01-01T10:00:00Z")
    cancelled = item([keypoint(20, 20)], "2026-01-03T10:00:00Z", was_cancelled=True)
    draft = item([keypoint(30, 30)], "2026-01-02T10:00:00Z")
    mask_prediction = item([brush()], "2026-01-04T10:00:00Z")  # newest, but no prompts
    chosen = prompts_from_task(task([old_annotation, cancelled], [draft], [mask_prediction]))
    assert xy(chosen) == [[(30, 30, True)]]
    # A keypoint prediction newer than everything else wins; on a tie the annotation wins.
    keypoint_prediction = item([keypoint(40, 40)], "2026-01-05T10:00:00Z")
    assert xy(prompts_from_task(task([old_annotation], [draft], [keypoint_prediction]))) == [[(40, 40, True)]]
    tie = item([keypoint(50, 50)], "2026-01-02T10:00:00Z")
    assert xy(prompts_from_task(task([tie], [draft]))) == [[(50, 50, True)]]


def test_tasks_without_prompts_and_malformed_regions():
    assert prompts_from_task(task()) == []
    assert prompts_from_task(task([item([brush(), keypoint(5, 5, positive=False)], "2026-01-01T00:00:00Z")])) == []
    broken = keypoint(5, 5)
    del broken["original_width"]
    with pytest.raises(PromptError, match="original_width"):
        prompts_from_task(task([item([broken], "2026-01-01T00:00:00Z")]))


# ------------------------------------------------------------------------ masks (in-process)
def test_predict_task_gives_the_click_path_mask_per_object(make_settings):
    settings = make_settings()
    engine = get_engine(settings)
    credentials = Credentials.resolve(settings)
    the_task = task([item([keypoint(60, 80), keypoint(250, 150)], "2026-01-01T00:00:00Z")])
    clicks = [p.clicks for p in prompts_from_task(the_task)]
    assert xy(prompts_from_task(the_task)) == [[(60, 80, True)], [(250, 150, True)]]
    segment = functools.partial(run_segment, settings=settings)
    prediction = predict_task(the_task, LabelConfig(CONFIG), segment, credentials, engine.model_version)

    image = get_fetcher(settings).fetch(UPLOAD, 7, credentials)
    expected = [engine.segment(image, list(object_clicks)) for object_clicks in clicks]
    assert prediction["model_version"] == engine.model_version == "tiny-lite0"
    assert [r["type"] for r in prediction["result"]] == ["brushlabels", "brushlabels"]
    assert [r["from_name"] for r in prediction["result"]] == ["tag", "tag"]
    for result, (mask, _) in zip(prediction["result"], expected):
        assert mask.any()
        np.testing.assert_array_equal(brush_mask(result), mask)
    assert not np.array_equal(expected[0][0], expected[1][0])  # the two objects differ
    assert prediction["score"] == pytest.approx(np.mean([score for _, score in expected]))
    assert predict_task(task(), LabelConfig(CONFIG), segment, credentials, engine.model_version) is None


def test_center_click_prompt(make_settings):
    settings = make_settings()
    prompt = center_prompt(task(), LabelConfig(CONFIG), settings, Credentials.resolve(settings))
    assert prompt.clicks == (Click(W // 2, H // 2, True),)
    assert (prompt.to_name, prompt.width, prompt.height, prompt.box) == ("image", W, H, None)
    with pytest.raises(PromptError, match="no BrushLabels or PolygonLabels"):
        center_prompt(task(), LabelConfig('<View><Image name="image" value="$image"/></View>'), settings,
                      Credentials.resolve(settings))


# ---------------------------------------------------------------------------- task selection
def test_task_filter():
    tasks = [{"id": i, "total_annotations": i % 2, "data": {"image": f"/data/upload/1/x-{name}"}}
             for i, name in enumerate(["teddy.jpg", "banana1.png", "banana2.png", "llama.png"], start=1)]

    def chosen(*expressions: str) -> list[int]:
        flt = TaskFilter.parse(expressions)
        return [t["id"] for t in tasks if flt.matches(t)]

    assert chosen() == [1, 2, 3, 4]
    assert chosen("id=1,3-4") == [1, 3, 4]
    assert chosen("annotated=yes") == [1, 3]
    assert chosen("annotated=no", "image~banana") == [2]
    assert chosen("id=2-3", "image~banana", "annotated=true") == [3]
    assert chosen("missing~x") == []
    for bad in ("id=a", "annotated=maybe", "image~(", "nonsense", "~x"):
        with pytest.raises(ValueError, match="bad --filter"):
            TaskFilter.parse([bad])


def test_has_version_reads_the_listed_prediction_versions():
    assert has_version({"predictions_model_versions": " x,fcanet-lite0-default,v2"}, "fcanet-lite0-default")
    assert not has_version({"predictions_model_versions": "fcanet-lite0-default-2"}, "fcanet-lite0-default")
    assert not has_version({"predictions_model_versions": ""}, "v1")


# ------------------------------------------------------------------- batch: real Redis, real worker
def _jobs(task_ids: list[int]) -> list[TaskJob]:
    return [TaskJob(task_id, CONFIG, Credentials()) for task_id in task_ids]


def _summary(mode: str) -> BatchSummary:
    return BatchSummary(project=1, model_version="tiny-lite0", mode=mode, workers=0,
                        outcomes=[TaskOutcome(9, SKIPPED, "has a prediction of model version tiny-lite0")])


@pytest.mark.slow
def test_queued_batch_reports_every_task_and_never_stops(make_settings, redis_url, start_worker):
    start_worker(queues="batch")
    settings = make_settings(REDIS_URL=redis_url)
    summary = execute_batch(settings, _jobs([1, 2, 3]), _summary("queued"), progress=False)
    assert summary.workers == 1 and summary.pending == []
    report = summary.to_dict()
    assert (report["tasks"], report["done"], report["skipped"], report["failed"]) == (4, 0, 1, 3)
    assert sorted(f["task_id"] for f in report["failures"]) == [1, 2, 3]
    for failure in report["failures"]:  # the file server has no task API: Label Studio's 404
        assert "HTTP 404" in failure["reason"] and f"/api/tasks/{failure['task_id']}" in failure["reason"]
    assert report["skip_reasons"] == {"has a prediction of model version tiny-lite0": 1}
    assert Queue("batch", connection=redis.Redis.from_url(redis_url)).count == 0


def test_task_claim_is_exclusive_and_released_only_by_its_owner(redis_url):
    connection = redis.Redis.from_url(redis_url)
    key = claim_key("http://ls.example", 3)
    with task_claim(connection, key, ttl=30) as first:
        with task_claim(connection, key, ttl=30) as second:
            assert first and not second
        assert connection.exists(key)  # the loser's exit does not release the owner's claim
        assert 0 < connection.ttl(key) <= 30
    assert not connection.exists(key)
    with task_claim(connection, key, ttl=30) as claimed:
        connection.set(key, "a later run's claim")  # ours expired and another run took the task
    assert claimed and connection.get(key) == b"a later run's claim"
    connection.delete(key)


@pytest.mark.slow
def test_queued_job_skips_a_task_another_run_is_annotating(make_settings, redis_url, start_worker):
    start_worker(queues="batch")
    settings = make_settings(REDIS_URL=redis_url)
    connection = redis.Redis.from_url(redis_url)
    busy = claim_key(Credentials.resolve(settings).url, 2)
    connection.set(busy, "another run", ex=60)
    try:
        summary = execute_batch(settings, _jobs([1, 2]), _summary("queued"), progress=False)
        outcomes = {o.task_id: o for o in summary.outcomes}
        assert outcomes[2].status == SKIPPED and "another auto-annotation run" in outcomes[2].reason
        assert outcomes[1].status == FAILED  # it ran (the file server has no task API)
        assert connection.get(busy) == b"another run"
        assert not connection.exists(claim_key(Credentials.resolve(settings).url, 1))  # released after the job
    finally:
        connection.delete(busy)


def test_queued_batch_without_worker(make_settings, redis_url):
    settings = make_settings(REDIS_URL=redis_url)
    queue = Queue("batch", connection=redis.Redis.from_url(redis_url))
    with pytest.raises(BackendError, match="no worker serves the batch queue") as err:
        execute_batch(settings, _jobs([1, 2]), _summary("queued"), progress=False)
    assert err.value.status == 503 and queue.count == 0
    summary = execute_batch(settings, _jobs([1, 2]), _summary("queued"), wait=False, progress=False)
    assert summary.pending == [1, 2] and queue.count == 2
    assert [job.args[0]["task_id"] for job in queue.get_jobs()] == [1, 2]
    assert queue.get_jobs()[0].func_name == "backend.autoannotate.annotate_task"


def test_in_process_batch_continues_after_failures(make_settings):
    summary = execute_batch(make_settings(), _jobs([4, 5]), _summary("in-process"), progress=False)
    assert [(o.task_id, o.status) for o in summary.outcomes] == [(9, SKIPPED), (4, FAILED), (5, FAILED)]
    assert all("HTTP 404" in o.reason for o in summary.outcomes[1:])
    assert summary.to_dict()["done"] == 0 and DONE not in {o.status for o in summary.outcomes}
