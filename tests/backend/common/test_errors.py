"""The backend's errors carry their HTTP status and detail across the worker → web boundary."""
from __future__ import annotations

from backend.common.errors import BackendError, BadRequest


def test_status_defaults_per_class_and_can_be_given() -> None:
    assert BackendError("boom").status == 500 and BadRequest("no image").status == 400
    assert BadRequest("too big", status=413).status == 413 and BadRequest.status == 400


def test_round_trip_through_a_dict() -> None:
    body = BadRequest("clicks must be a list").to_dict()
    assert body == {"status": 400, "detail": "clicks must be a list", "error": "BadRequest"}
    again = BackendError.from_dict(body)
    assert again.status == 400 and again.detail == "clicks must be a list" and str(again) == again.detail
    assert BackendError.from_dict({}).to_dict()["status"] == 500
