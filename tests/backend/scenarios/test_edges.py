"""Edges that must not answer 500 nor leak: odd auth bytes, an unknown Label Studio, unexpected
errors in the CVAT handler, and prefetch failures that must be visible in the log."""
from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import time

import numpy as np
import redis
import requests
from PIL import Image
from rq import Queue

from backend.web.app import create_app
from backend.cvat.interactor import CvatInteractor
from backend.inference.jobs import SEGMENT_JOB, SegmentRequest
from backend.labelstudio.client import Credentials
from backend.inference.prefetch import Prefetcher
from backend.labelstudio.prompts import OutputSpec
from fcanet_core import Click


def _raw_get(url: str, path: str, authorization: bytes) -> int:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.putrequest("GET", path)
    connection.putheader("Authorization", authorization)
    connection.endheaders()
    return connection.getresponse().status


def test_authorization_headers_with_non_ascii_bytes_answer_401(make_settings, serve_http):
    url = serve_http(create_app(make_settings(REDIS_URL=None, BASIC_AUTH_USER="u", BASIC_AUTH_PASS="p")))
    for header in (b"Basic \xff\xfe\xc3\xa9", b"Basic dTpw\xc3\xa9", b"Basic \xc3\xa9", b"\xc3\xa9 dTpw"):
        assert _raw_get(url, "/health", header) == 401, header
    assert _raw_get(url, "/health", b"Basic " + base64.b64encode(b"u:p")) == 200


def test_a_click_without_a_known_label_studio_answers_503_with_the_detail(make_settings, serve_http, click_body,
                                                                        tmp_path):
    url = serve_http(create_app(make_settings(MODEL_DIR=str(tmp_path), REDIS_URL=None, LABEL_STUDIO_URL=None,
                                              LABEL_STUDIO_API_KEY=None)))    # no /setup ever came
    answer = requests.post(url + "/predict", json=click_body, timeout=60)
    assert answer.status_code == 503, answer.text
    assert "Label Studio URL is unknown" in answer.json()["detail"]


class _BrokenRunner:
    """A runner with a bug: what an unexpected error in the inference path looks like to the handler."""

    def segment_frame(self, request):
        raise RuntimeError("secret detail at /srv/private/path")


def test_an_unexpected_cvat_error_answers_only_a_request_id(make_settings, caplog):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="PNG")
    body = {"image": base64.b64encode(buffer.getvalue()).decode(), "pos_points": [[2, 2]], "neg_points": []}
    with caplog.at_level(logging.ERROR, logger="backend.cvat"):
        status, text = CvatInteractor(make_settings(REDIS_URL=None), runner=_BrokenRunner()).answer(body)
    reply = json.loads(text)
    assert status == 500 and reply["status"] == 500
    assert "secret" not in text and "RuntimeError" not in text and "request" in reply["detail"]
    assert any("secret detail" in (r.exc_text or "") for r in caplog.records), "the log keeps the traceback"


def test_prefetch_failures_are_logged_at_warning_once_a_minute(make_settings, redis_url, ls_files, caplog):
    settings = make_settings(REDIS_URL=redis_url)
    queue = Queue("inference", connection=redis.Redis.from_url(redis_url))
    output = OutputSpec("brushlabels", "tag", "image", "Object", 64, 48)
    for i in range(3):
        request = SegmentRequest(f"/data/upload/missing-{i}.png", 900 + i, Credentials(ls_files.url, ls_files.token, True),
                                 (Click(1, 1, True),), None, output)
        queue.enqueue(SEGMENT_JOB, request.to_payload())
    prefetcher = Prefetcher(settings)

    def warnings() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.levelno == logging.WARNING and r.getMessage() == "prefetch failed"]

    with caplog.at_level(logging.WARNING, logger="backend.inference.prefetch"):
        prefetcher.queued(queue)
        deadline = time.monotonic() + 30
        while ls_files.count("/data/upload/missing-") < 3 or not warnings():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)                               # the other two failures end meanwhile
        prefetcher.shutdown()
    assert len(warnings()) == 1, [r.getMessage() for r in caplog.records]
    assert "missing-" in warnings()[0].image
