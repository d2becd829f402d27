"""Request bodies are checked where they enter: the right JSON types, or a 400 that names the field."""
from __future__ import annotations

import pytest

from backend.common.errors import BadRequest
from backend.web.validation import PredictRequest, SetupRequest, json_object, predict_request, setup_request


def test_json_object_refuses_invalid_non_object_and_deeply_nested_bodies() -> None:
    assert json_object(b'{"tasks": []}') == {"tasks": []}
    for raw, detail in [(b"{not json", "must be a JSON object"), (b"[1, 2]", "must be a JSON object"),
                        (b"", "must be a JSON object"), (b"[" * 100000 + b"]" * 100000, "nested too deeply")]:
        with pytest.raises(BadRequest, match=detail) as caught:
            json_object(raw)
        assert caught.value.status == 400


def test_predict_request_types_its_fields() -> None:
    body = {"tasks": [{"id": 3, "data": {"image": "http://ls/a.png"}}], "project": 7,
            "params": {"context": {"result": []}}, "label_config": "<View/>"}
    assert predict_request(body) == PredictRequest(body["tasks"], {"result": []}, "7", "<View/>")
    assert predict_request({"tasks": [{}], "project": "7.1700000000"}).project == "7.1700000000"
    assert predict_request({"tasks": [], "params": None}).context is None


@pytest.mark.parametrize(("body", "detail"), [
    ({}, "missing field 'tasks'"),
    ({"tasks": {"id": 1}}, "'tasks' must be a list of task objects"),
    ({"tasks": ["a"]}, "'tasks' must be a list of task objects"),
    ({"tasks": [{"id": True}]}, r"tasks\[0\].id must be an integer, got bool"),
    ({"tasks": [{"id": 1}, {"id": "2"}]}, r"tasks\[1\].id must be an integer, got str"),
    ({"tasks": [{"data": "x"}]}, r"tasks\[0\].data must be an object"),
    ({"tasks": [], "params": [1]}, "'params' must be an object"),
    ({"tasks": [], "params": {"context": "x"}}, "params.context must be an object or null, got str"),
    ({"tasks": [], "project": 1.5}, "'project' must be a string or an integer id, got float"),
    ({"tasks": [], "project": False}, "'project' must be a string or an integer id, got bool"),
    ({"tasks": [], "label_config": 3}, "'label_config' must be a string, got int"),
])
def test_predict_request_names_the_bad_field(body: dict, detail: str) -> None:
    with pytest.raises(BadRequest, match=detail):
        predict_request(body)


def test_setup_request_checks_the_hostname_and_drops_empty_values() -> None:
    assert setup_request({"project": 2, "hostname": "https://ls.example.org", "access_token": "t"}) == \
        SetupRequest("2", "https://ls.example.org", "t")
    assert setup_request({"hostname": "", "access_token": ""}) == SetupRequest(None, None, None)
    with pytest.raises(BadRequest, match="must be an http:// or https:// URL"):
        setup_request({"hostname": "ftp://ls"})
    with pytest.raises(BadRequest, match="'access_token' must be a string"):
        setup_request({"access_token": 12})
