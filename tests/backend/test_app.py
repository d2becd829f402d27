"""The ML backend protocol in-process (no Redis): routes, errors, auth, prompts to masks, metrics."""
from __future__ import annotations

import base64
import copy

import numpy as np
import pytest

from backend.app import create_app
from backend.bench.annotator import brush_mask

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


@pytest.fixture
def click_body(capture):
    """The captured interactive request (one positive smart keypoint at the image centre)."""
    return capture("predict_interactive_pos")


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
        assert response.json == {"status": "UP", "model_class": "FCANetBackend", "model_version": "tiny-lite0",
                                 "inference": "in-process"}


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


def test_tasks_without_prompts_get_empty_results(client, capture):
    response = client.post("/predict", json=capture("predict_regular_dm_action"))
    assert response.status_code == 200
    assert response.json == {"results": [{"result": [], "score": 0.0, "model_version": "tiny-lite0"}] * 2}


def test_setup_credentials_are_used_when_the_env_has_none(make_settings, ls_files, click_body, capture):
    client = create_app(make_settings(LABEL_STUDIO_URL=None, LABEL_STUDIO_API_KEY=None)).test_client()
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


def test_metrics_count_requests_errors_and_latency(client, click_body):
    client.get("/health")
    client.post("/predict", json=click_body)
    client.post("/predict", data=b"nope", content_type="application/json")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'fcanet_http_requests_total{method="GET",route="/health",status="200"} 1.0' in text
    assert 'fcanet_http_requests_total{method="POST",route="/predict",status="200"} 1.0' in text
    assert 'fcanet_errors_total{error="BadRequest"} 1.0' in text
    assert 'fcanet_http_request_duration_seconds_count{route="/predict"} 2.0' in text
    assert 'fcanet_model_version_info{version="tiny-lite0"} 1.0' in text
    assert "fcanet_queue_up 1.0" in text
