"""The ML backend protocol in-process (no Redis): routes, errors, auth, prompts to masks, metrics."""
from __future__ import annotations

import base64
import copy
import json

import numpy as np
import pytest
import requests

from backend.bench.annotator import brush_mask
from backend.web.app import create_app

UPLOAD = "/data/upload/1/a6b80a50-disc.png"
POLYGON_CONFIG = """<View><Image name="image" value="$image"/>
  <PolygonLabels name="poly" toName="image"><Label value="Object"/></PolygonLabels>
  <KeyPointLabels name="kp" toName="image" smart="true"><Label value="Object"/></KeyPointLabels>
  <RectangleLabels name="rect" toName="image" smart="true"><Label value="Object"/></RectangleLabels>
</View>"""
MULTI_LABEL_CONFIG = """<View><Image name="image" value="$image"/>
  <BrushLabels name="tag" toName="image"><Label value="Cat"/><Label value="Dog"/></BrushLabels>
  <KeyPointLabels name="tag2" toName="image" smart="true"><Label value="Cat"/><Label value="Dog"/></KeyPointLabels>
</View>"""


@pytest.fixture
def client(make_settings):
    return create_app(make_settings()).test_client()


def with_regions(body: dict, *regions: dict, label_config: str | None = None, image: str | None = None) -> dict:
    body = copy.deepcopy(body)
    body["params"]["context"] = {"result": list(regions)}
    if label_config:
        body["label_config"] = label_config
    if image:
        body["tasks"][0]["data"]["image"] = image
    return body


def keypoint(x: float, y: float, positive: bool = True, label: str = "Object") -> dict:
    return {"original_width": 320, "original_height": 240, "image_rotation": 0, "id": f"k{x}{y}",
            "from_name": "tag2", "to_name": "image", "type": "keypointlabels", "origin": "manual",
            "value": {"x": x, "y": y, "width": 0.6, "keypointlabels": [label]}, "is_positive": positive}


def test_health_and_root(client):
    for path in ("/health", "/"):
        response = client.get(path)
        assert response.status_code == 200
        body = response.json
        runtimes = body.pop("runtimes")
        assert body == {"status": "UP", "model_class": "FCANetBackend", "model_version": "tiny-lite0",
                "inference": "in-process"}
        assert runtimes["in-process"]["model_version"] == "tiny-lite0"
        assert runtimes["in-process"]["runtime"] == "openvino"               # FCANET_RUNTIME=auto on a CPU
        assert runtimes["in-process"]["fallback_reason"] is None


def test_click_gives_a_brush_mask_at_original_size(client, click_body):
    response = client.post("/predict", json=click_body)
    assert response.status_code == 200, response.json
    (prediction,) = response.json["results"]
    assert prediction["model_version"] == "tiny-lite0" and 0.0 < prediction["score"] <= 1.0
    (region,) = prediction["result"]
    assert (region["type"], region["from_name"], region["to_name"]) == ("brushlabels", "tag", "image")
    assert region["value"]["brushlabels"] == ["Object"]
    mask = brush_mask(region)
    assert mask.shape == (240, 320) and mask[120, 160] == 1


def test_more_clicks_change_the_mask_and_the_first_click_stays_first(client, click_body):
    one = brush_mask(client.post("/predict", json=click_body).json["results"][0]["result"][0])
    pos, neg1, neg2 = keypoint(50, 50), keypoint(10, 10, positive=False), keypoint(90, 90, positive=False)
    body = with_regions(click_body, pos, neg1, neg2)
    three = brush_mask(client.post("/predict", json=body).json["results"][0]["result"][0])
    swapped = with_regions(click_body, neg1, pos, neg2)
    same = brush_mask(client.post("/predict", json=swapped).json["results"][0]["result"][0])
    assert not np.array_equal(one, three)
    np.testing.assert_array_equal(three, same)        # a negative first region yields to the first positive


def test_the_clicked_label_becomes_the_mask_label(client, click_body):
    body = with_regions(click_body, keypoint(50, 50, label="Dog"), label_config=MULTI_LABEL_CONFIG)
    (region,) = client.post("/predict", json=body).json["results"][0]["result"]
    assert region["value"]["brushlabels"] == ["Dog"] and region["from_name"] == "tag"


def test_polygon_config_gives_polygons(client, click_body):
    body = with_regions(click_body, keypoint(50, 50) | {"from_name": "kp"}, label_config=POLYGON_CONFIG)
    results = client.post("/predict", json=body).json["results"][0]["result"]
    assert results and all(r["type"] == "polygonlabels" and r["from_name"] == "poly" for r in results)
    assert all(0 <= x <= 100 and 0 <= y <= 100 for r in results for x, y in r["value"]["points"])


def test_rectangle_limits_the_mask_to_its_zoom_region(client, click_body):
    rect = {"original_width": 320, "original_height": 240, "id": "r1", "from_name": "rect", "to_name": "image",
            "type": "rectanglelabels", "value": {"x": 40, "y": 40, "width": 20, "height": 20, "rotation": 0,
                                                 "rectanglelabels": ["Object"]}}
    body = with_regions(click_body, rect, label_config=POLYGON_CONFIG.replace("PolygonLabels", "BrushLabels"))
    (region,) = client.post("/predict", json=body).json["results"][0]["result"]
    mask = brush_mask(region)
    # box 128..192 × 96..144 px, crop = box grown 1.4× and to at least 200 px a side
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert mask[120, 160] == 1
    assert cols.min() >= 60 and cols.max() < 260 and rows.min() >= 20 and rows.max() < 220


def test_tasks_without_prompts_get_no_prediction(client, capture):
    response = client.post("/predict", json=capture("predict_regular_dm_action"))
    assert response.status_code == 200
    assert response.json == {"results": [[], []]}    # one list of zero predictions per task: nothing stored


def test_setup_credentials_are_used_when_the_env_has_none(make_settings, ls_files, click_body, capture):
    client = create_app(make_settings(LABEL_STUDIO_URL=None, LABEL_STUDIO_API_KEY=None,
                                      ALLOWED_HOSTS="127.0.0.1")).test_client()
    setup = capture("setup") | {"hostname": ls_files.url + "/", "access_token": ls_files.token}
    assert client.post("/setup", json=setup).json == {"model_version": "tiny-lite0"}
    response = client.post("/predict", json=click_body)
    assert response.status_code == 200, response.json
    assert ls_files.requests[-1][2] == f"Token {ls_files.token}"


@pytest.mark.parametrize("data, detail", [
    (b"{not json", "JSON object"),
    (b"[1, 2]", "JSON object"),
    (b'{"params": {}}', "missing field 'tasks'"),
    (b'{"tasks": "x"}', "'tasks' must be a list"),
    (b'{"tasks": [], "params": 5}', "'params' must be an object"),
])
def test_malformed_predict_requests_are_400(client, data, detail):
    response = client.post("/predict", data=data, content_type="application/json")
    assert response.status_code == 400
    assert response.json["status"] == 400 and detail in response.json["detail"]


def test_prompt_problems_are_400(client, click_body):
    bad = keypoint(50, 50)
    bad["value"]["x"] = "left"
    response = client.post("/predict", json=with_regions(click_body, bad))
    assert response.status_code == 400 and "not a number" in response.json["detail"]
    no_output = '<View><Image name="image" value="$image"/><KeyPointLabels name="tag2" toName="image"/></View>'
    response = client.post("/predict", json=with_regions(click_body, keypoint(5, 5), label_config=no_output))
    assert response.status_code == 400 and "BrushLabels" in response.json["detail"]


@pytest.mark.parametrize("image, status, detail", [
    ("/data/upload/1/missing.png", 404, "no image at"),
    ("http://169.254.169.254/latest/", 403, "not allowed"),
    ("/data/upload/1/notes.png", 422, "cannot decode"),
])
def test_image_problems_are_4xx_with_detail(client, click_body, ls_files, image, status, detail):
    ls_files.add("upload/1/notes.png", b"plain text")
    response = client.post("/predict", json=with_regions(click_body, keypoint(50, 50), image=image))
    assert response.status_code == status
    assert response.json["status"] == status and detail in response.json["detail"]


def test_unknown_route_is_json_404(client):
    response = client.get("/versions")
    assert response.status_code == 404 and response.json["status"] == 404


def test_webhook_needs_an_action(client):
    response = client.post("/webhook", json={"project": {"id": 1}})
    assert response.status_code == 400 and "action" in response.json["detail"]


def test_basic_auth(make_settings):
    client = create_app(make_settings(BASIC_AUTH_USER="ls", BASIC_AUTH_PASS="s3cret")).test_client()

    def auth(user: str, password: str) -> dict:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    response = client.get("/health")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Basic")
    assert response.json["status"] == 401
    assert client.get("/health", headers=auth("ls", "wrong")).status_code == 401
    assert client.post("/setup", json={}, headers=auth("other", "s3cret")).status_code == 401
    assert client.get("/health", headers=auth("ls", "s3cret")).status_code == 200


# ------------------------------------------------------------------ hostile requests over real HTTP
@pytest.fixture
def http_url(make_settings, serve_http):
    """The in-process app behind a real HTTP server, MAX_IMAGE_PIXELS 100 000 (the image has 76 800)."""
    return serve_http(create_app(make_settings(MAX_IMAGE_PIXELS="100000")))


def sized(body: dict, width: float, height: float) -> dict:
    body = copy.deepcopy(body)
    for region in body["params"]["context"]["result"]:
        region.update(original_width=width, original_height=height)
    return body


def region_edit(body: dict, **fields) -> dict:
    body = copy.deepcopy(body)
    body["params"]["context"]["result"][0].update(fields)
    return body


@pytest.mark.parametrize("make_body, route, status, detail", [
    (lambda b: '{"a": ' * 100_000 + "1" + "}" * 100_000, "/predict", 400, "nested too deeply"),
    (lambda b: region_edit(b, value="x=50"), "/predict", 400, "value must be an object"),
    (lambda b: b | {"project": [1]}, "/predict", 400, "'project' must be a string"),
    (lambda b: {"project": [1], "hostname": "http://x"}, "/setup", 400, "'project' must be a string"),
    (lambda b: {"project": "1.2", "hostname": 8080}, "/setup", 400, "'hostname' must be a string"),
    (lambda b: b | {"tasks": [{"id": "seven", "data": {"image": "s3://bucket/a.png"}}]}, "/predict", 400,
     "tasks[0].id must be an integer"),
    (lambda b: sized(b, float("inf"), 240), "/predict", 400, "impossible image size"),
    (lambda b: sized(b, 1e9, 1e9), "/predict", 413, "MAX_IMAGE_PIXELS=100000"),
    (lambda b: sized(b, 400, 300), "/predict", 413, "MAX_IMAGE_PIXELS=100000"),   # 120 000 claimed pixels
    (lambda b: region_edit(b, value=b["params"]["context"]["result"][0]["value"] | {"keypointlabels": ["Lion"]}),
     "/predict", 400, "'Lion' is not a label"),
])
def test_malformed_and_hostile_requests_get_4xx_with_a_human_detail(http_url, click_body, make_body, route, status,
                                                                    detail):
    body = make_body(click_body)
    data = body if isinstance(body, str) else json.dumps(body)       # json.dumps writes Infinity as such
    response = requests.post(http_url + route, data=data, headers={"Content-Type": "application/json"}, timeout=60)
    assert response.status_code == status, response.text
    assert response.json()["status"] == status and detail in response.json()["detail"]
    assert " at 0x" not in response.json()["detail"]


def test_a_claimed_size_other_than_the_image_scales_the_clicks_not_the_image(http_url, click_body):
    body = sized(click_body, 160, 120)                                   # the image is 320×240
    response = requests.post(http_url + "/predict", json=body, timeout=60)
    assert response.status_code == 200, response.text
    mask = brush_mask(response.json()["results"][0]["result"][0])
    assert mask.shape == (120, 160) and mask[60, 80] == 1


def test_setup_cannot_send_the_environment_token_elsewhere(make_settings, serve_http, ls_files, click_body):
    settings = make_settings(LABEL_STUDIO_URL=None, ALLOWED_HOSTS=None)        # the env token is set
    url = serve_http(create_app(settings))
    setup = {"project": "1.1795511745", "hostname": ls_files.other_url}
    refused = requests.post(url + "/setup", json=setup, timeout=10)
    assert refused.status_code == 403 and "ALLOWED_HOSTS" in refused.json()["detail"]

    url = serve_http(create_app(make_settings(LABEL_STUDIO_URL=None, ALLOWED_HOSTS="localhost")))
    assert requests.post(url + "/setup", json=setup, timeout=10).status_code == 200
    before = len(ls_files.requests)
    response = requests.post(url + "/predict", json=click_body | {"project": setup["project"]}, timeout=60)
    assert response.status_code == 502, response.text               # the file server wants a token
    sent = ls_files.requests[before:]
    assert sent and all(auth is None for _, _, auth in sent), "the environment's token went to /setup's host"


def test_bodies_over_max_request_bytes_are_413(make_settings, serve_http):
    url = serve_http(create_app(make_settings(MAX_REQUEST_BYTES="1000")))
    response = requests.post(url + "/predict", data=b"{" + b" " * 2000 + b"}",
                             headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 413 and response.json()["status"] == 413


@pytest.mark.parametrize("mutate, detail", [
    (lambda p: p["annotation"]["result"][0].update(value="rle"), "value must be an object"),
    (lambda p: p.update(project=[1]), "project"),
])
def test_hostile_webhooks_are_400_not_500(http_url, capture, mutate, detail):
    payload = capture("webhook_annotation_created")
    mutate(payload)
    response = requests.post(http_url + "/webhook", json=payload, timeout=30)
    assert response.status_code == 400 and detail in response.json()["detail"], response.text


def test_a_webhook_whose_label_config_is_not_text_is_still_collected(http_url, capture):
    payload = capture("webhook_annotation_created")
    payload["project"]["label_config"] = 5              # ignored: the task's only data field is the image
    response = requests.post(http_url + "/webhook", json=payload, timeout=30)
    assert response.status_code == 201 and response.json()["result"]["status"] == "queued", response.text
