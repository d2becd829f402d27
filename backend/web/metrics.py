"""Prometheus metrics of the web process (``GET /metrics``, text exposition format).

Per process (run gunicorn with one worker process and several threads, the default, for one
consistent view): requests by route, method and status; request latency; errors by class;
requests in flight; and, read at scrape time, queue depths (``fcanet_queue_up`` is 0 when Redis is
unreachable) and the model version served.
"""
from __future__ import annotations

import logging
from typing import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from ..common.errors import BackendError
from ..inference.queueing import Runner

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class _RunnerCollector(Collector):
    """Queue depths and the served model version, read when Prometheus scrapes."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("fcanet_queue_depth", "Jobs waiting in a queue", labels=["queue"])
        up = GaugeMetricFamily("fcanet_queue_up", "1 when the queue server answered this scrape")
        try:
            for name, count in self.runner.queue_depths().items():
                depth.add_metric([name], count)
            up.add_metric([], 1)
        except BackendError as exc:
            logger.warning("queue depth unavailable", extra={"error": exc.detail})
            up.add_metric([], 0)
        yield depth
        yield up
        info = GaugeMetricFamily("fcanet_model_version_info", "The model version served", labels=["version"])
        try:
            info.add_metric([self.runner.model_version], 1)
        except (OSError, ValueError) as exc:
            logger.warning("model version unavailable", extra={"error": str(exc)})
        yield info


class Metrics:
    """The web process's metrics in their own registry (several apps may live in one process)."""

    def __init__(self, runner: Runner) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("fcanet_http_requests", "HTTP requests answered",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("fcanet_http_request_duration_seconds", "Time to answer a request",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.errors = Counter("fcanet_errors", "Error answers by error class", ["error"], registry=self.registry)
        self.in_flight = Gauge("fcanet_http_requests_in_flight", "Requests being answered", registry=self.registry)
        self.registry.register(_RunnerCollector(runner))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """(body, content type) of the exposition."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
