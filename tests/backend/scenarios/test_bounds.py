"""Work per request is bounded: pixels of the network input, clicks per request, the time of a
whole ``/predict``; each limit answers clearly and the next click is unaffected. Real HTTP, real
images, the tiny real model."""
from __future__ import annotations

import base64
import copy
import io
import time

import numpy as np
import pytest
import requests
from PIL import Image

import fcanet_core
from backend.web.app import create_app
from backend.cvat.interactor import CvatInteractor
from fcanet_core import Click, Predictor


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def frame_body(width: int, height: int, positives: list) -> dict:
    return {"image": base64.b64encode(_png(width, height)).decode(), "pos_points": positives, "neg_points": []}


def test_an_elongated_image_gets_a_network_input_with_a_bounded_long_side(tiny_checkpoint):
    predictor = Predictor(fcanet_core.load_model(str(tiny_checkpoint), "cpu"), device="cpu", short_side=352,
                          max_long_side=2048)
    image = np.full((1, 20000, 3), 128, np.uint8)
    inputs = predictor.network_inputs(image, [Click(10000, 0, True)])
    assert tuple(inputs[0].shape[-2:]) == (32, 2048)      # not 352 x 7 040 000
    assert predictor.predict(image, [Click(10000, 0, True)]).mask.shape == (1, 20000)


def test_a_20000x1_frame_is_answered_within_the_bound(make_settings):
    interactor = CvatInteractor(make_settings(REDIS_URL=None, FCANET_SHORT_SIDE="352"))
    status, text = interactor.answer(frame_body(20000, 1, [[10000, 0]]))
    assert status == 200, text
    assert interactor.answer(frame_body(64, 48, [[10, 10]]))[0] == 200


def test_too_many_clicks_answer_400_on_both_paths_and_the_next_click_works(make_settings, serve_http, click_body):
    settings = make_settings(REDIS_URL=None, MAX_CLICKS="50")
    interactor = CvatInteractor(settings)
    status, text = interactor.answer(frame_body(64, 48, [[10, 10]] * 51))
    assert status == 400 and "MAX_CLICKS=50" in text
    assert interactor.answer(frame_body(64, 48, [[10, 10]] * 50))[0] == 200

    url = serve_http(create_app(settings))
    many = copy.deepcopy(click_body)
    region = many["params"]["context"]["result"][0]
    many["params"]["context"]["result"] = [{**region, "id": f"kp{i}"} for i in range(51)]
    answer = requests.post(url + "/predict", json=many, timeout=60)
    assert answer.status_code == 400 and "MAX_CLICKS=50" in answer.json()["detail"], answer.text
    assert requests.post(url + "/predict", json=click_body, timeout=60).status_code == 200


@pytest.mark.slow
def test_retrieve_predictions_answers_within_the_request_deadline(make_settings, serve_http, click_body, ls_files):
    url = serve_http(create_app(make_settings(REDIS_URL=None, PREDICT_REQUEST_TIMEOUT="3")))
    region = click_body["params"]["context"]["result"][0]
    tasks = [{"id": i, "data": {"image": f"{ls_files.url}/slow/1.5/1/a6b80a50-disc.png?task={i}"},
              "annotations": [], "predictions": [{"id": i, "result": [region]}]} for i in range(10)]
    body = {**click_body, "tasks": tasks, "params": {"context": None}}
    started = time.monotonic()
    answer = requests.post(url + "/predict", json=body, timeout=60)
    elapsed = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert len(results) == 10
    assert elapsed < 3 + 2, f"{elapsed:.1f}s: ten 1.5 s downloads in a row would take 15 s"
    assert results[0] and results[0]["result"], "the first task had the time to be predicted"
    assert results[-1] == [], "the tasks left when the deadline passed get no prediction"
    assert requests.post(url + "/predict", json=click_body, timeout=60).status_code == 200
