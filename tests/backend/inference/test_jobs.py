"""The segment job: its payload and the result it gives."""
from __future__ import annotations

import pytest

from backend.bench.annotator import brush_mask
from backend.common.errors import BadRequest
from backend.inference.jobs import SegmentRequest, run_segment
from backend.labelstudio.client import Credentials
from backend.labelstudio.prompts import OutputSpec
from backend.labelstudio.regions import Box
from fcanet_core import Click


def request(**changes) -> SegmentRequest:
    fields = dict(image="/data/upload/1/a6b80a50-disc.png", task_id=1, credentials=Credentials(),
                  clicks=(Click(160.5, 120.25, True), Click(10, 20, False)), box=Box(1, 2, 3, 4),
                  output=OutputSpec("brushlabels", "tag", "image", "Object", 320, 240), model_version="tiny-lite0")
    return SegmentRequest(**{**fields, **changes})


def test_segment_payload_round_trip_and_errors():
    original = request()
    assert SegmentRequest.from_payload(original.to_payload()) == original
    with pytest.raises(BadRequest, match="malformed segment job payload"):
        SegmentRequest.from_payload({"image": "x", "clicks": [[1, 2]]})


def test_the_result_has_the_size_label_studio_measured(make_settings):
    small = request(box=None, clicks=(Click(80, 60, True),),
                    output=OutputSpec("brushlabels", "tag", "image", "Object", 160, 120))
    answer = run_segment(small, make_settings())
    assert brush_mask(answer["result"][0]).shape == (120, 160)
    assert answer["model_version"] == "tiny-lite0"
