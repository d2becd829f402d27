"""``python -m backend``: the parser, worker start-up errors, and ``serve`` through gunicorn."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import redis
import requests
from rq import Worker

from backend import cli
from backend.bench.harness import REPO_ROOT, ManagedProcess, free_port


def commands(parser) -> set[str]:
    return set(parser._subparsers._group_actions[0].choices)


def test_every_documented_command_parses():
    parser = cli.build_parser()
    assert commands(parser) == {"serve", "worker", "auto-annotate", "versions", "fine-tune", "cron",
                                "evaluate"}
    args = parser.parse_args(["auto-annotate", "--project", "3", "--no-only-missing", "--filter", "id=1-5",
                              "--no-wait"])
    assert (args.project, args.only_missing, args.filter, args.wait) == (3, False, ["id=1-5"], False)
    assert parser.parse_args(["versions", "promote", "v1"]).name == "v1"
    assert parser.parse_args(["fine-tune", "--project", "2", "--enqueue"]).enqueue
    assert parser.parse_args(["cron", "--interval", "5"]).interval == 5
    args = parser.parse_args(["evaluate", "--dataset", "data", "--every", "5", "--limit", "20"])
    assert (args.dataset, args.every, args.limit) == ("data", 5, 20)
    with pytest.raises(SystemExit):
        parser.parse_args(["cron", "--interval", "5", "--schedule", "0 3 * * *"])


def run_cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_worker_start_up_errors_are_clear(backend_env, redis_url):
    result = run_cli(backend_env | {"REDIS_URL": redis_url}, "worker", "--queues", "inference,nope")
    assert result.returncode == 2 and "unknown queue(s) ['nope']" in result.stderr
    result = run_cli(backend_env, "worker")
    assert result.returncode == 2 and "needs REDIS_URL" in result.stderr
    result = run_cli(backend_env | {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, "worker")
    assert result.returncode == 1 and "unavailable" in result.stderr
    result = run_cli(backend_env | {"JOB_TIMEOUT": "soon"}, "worker")
    assert result.returncode == 2 and "JOB_TIMEOUT='soon' is invalid" in result.stderr


@pytest.mark.slow
def test_serve_runs_the_wsgi_app_under_gunicorn(backend_env, tmp_path):
    port = free_port()
    web = ManagedProcess("web", [sys.executable, "-m", "backend", "serve", "--host", "127.0.0.1", "--port", str(port)],
                         backend_env | {"LOG_FORMAT": "json"}, tmp_path / "web.log").start()
    try:
        web.wait_http(f"http://127.0.0.1:{port}/health", timeout=120)
        response = requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert response.json()["model_class"] == "FCANetBackend"
        assert response.headers["Server"].startswith("gunicorn")
        missing = requests.post(f"http://127.0.0.1:{port}/predict", data=b"{", timeout=5)
        assert missing.status_code == 400
    finally:
        web.stop()
    lines = [json.loads(line) for line in web.log_path.read_text().splitlines() if line.startswith("{")]
    assert any(line["msg"] == "request" and line.get("route") == "/predict" and line.get("status") == 400
               for line in lines)


@pytest.mark.slow
def test_a_worker_without_queues_serves_every_queue_clicks_first(backend_env, redis_url, tmp_path):
    worker = ManagedProcess("worker", [sys.executable, "-m", "backend", "worker"], backend_env | {"REDIS_URL": redis_url},
                           tmp_path / "worker.log").start()
    try:
        worker.wait_rq_worker(redis_url)
        (registered,) = Worker.all(connection=redis.Redis.from_url(redis_url))
        assert registered.queue_names() == ["inference", "batch", "training"]
    finally:
        worker.stop()
