"""Prompts → prediction of a task: the prompts it carries and one mask per object through the click path."""
from __future__ import annotations

import numpy as np
import pytest

from backend.bench.annotator import brush_mask
from backend.images.fetch import get_fetcher
from backend.inference.engine import get_engine
from backend.inference.jobs import run_segment
from backend.labelstudio.client import Credentials
from backend.labelstudio.prompts import LabelConfig
from backend.labelstudio.regions import PromptError
from backend.labelstudio.task_prediction import center_prompt, predict_task, prompts_from_task
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
    requests = []

    def segment(request):
        requests.append(request)
        return run_segment(request, settings=settings)

    prediction = predict_task(the_task, LabelConfig(CONFIG), segment, credentials, engine.model_version)
    assert [r.clicks for r in requests] == clicks  # one request per object, each with its own clicks

    image = get_fetcher(settings).fetch(UPLOAD, 7, credentials)
    expected = [engine.segment(image, list(object_clicks)) for object_clicks in clicks]
    assert prediction["model_version"] == engine.model_version == "tiny-lite0"
    assert [r["type"] for r in prediction["result"]] == ["brushlabels", "brushlabels"]
    assert [r["from_name"] for r in prediction["result"]] == ["tag", "tag"]
    for result, (mask, _) in zip(prediction["result"], expected):
        assert mask.any()
        np.testing.assert_array_equal(brush_mask(result), mask)
    assert prediction["score"] == pytest.approx(np.mean([score for _, score in expected]))
    assert predict_task(task(), LabelConfig(CONFIG), segment, credentials, engine.model_version) is None
    assert len(requests) == 2


def test_center_click_prompt(make_settings):
    settings = make_settings()
    prompt = center_prompt(task(), LabelConfig(CONFIG), settings, Credentials.resolve(settings))
    assert prompt.clicks == (Click(W // 2, H // 2, True),)
    assert (prompt.to_name, prompt.width, prompt.height, prompt.box) == ("image", W, H, None)
    with pytest.raises(PromptError, match="no BrushLabels or PolygonLabels"):
        center_prompt(task(), LabelConfig('<View><Image name="image" value="$image"/></View>'), settings,
                      Credentials.resolve(settings))
