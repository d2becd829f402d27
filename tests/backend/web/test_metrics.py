"""``GET /metrics``: requests, errors, latency, the model version and the queue, counted per process."""
from __future__ import annotations

import pytest

from backend.web.app import create_app


@pytest.fixture
def client(make_settings):
    return create_app(make_settings()).test_client()


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
