"""The Flask app speaking Label Studio's ML backend protocol.

Routes: ``GET /health`` (and ``GET /``), ``POST /setup``, ``POST /predict``, ``POST /webhook``,
``GET /metrics``. ``/health`` and ``/setup`` only read the model registry's pointer (and, with
Redis, the queues' state), so they answer within Label Studio's 1 s / 3 s limits; with
``REDIS_URL`` set no request loads a model or trains in this process (without it the model is
loaded once, when the app is created). ``/health`` answers 503 ``DOWN`` while Redis is down and
lists queues no worker serves; ``runtimes`` says what runs the network in each process (a torch
fallback from a broken ONNX artefact is also a warning).

Errors are JSON ``{"status": <code>, "detail": "<what went wrong>"}``: malformed JSON, fields of the
wrong type or missing 400, bad credentials 401, image problems 4xx (403 host/path not allowed, 404,
413 too large, 422 undecodable), Label Studio or an image host unreachable 502, queue unavailable
or the worker lost 503, timeouts 504 (the image download or the click), anything unexpected 500
(logged with its traceback; the answer names only the request id).

``/setup`` stores the hostname and token Label Studio sends per project, for every web process
of the ``MODEL_DIR`` (:mod:`backend.setup_credentials`). With ``LABEL_STUDIO_URL``
set the hostname is not used; without it, a hostname whose host is not in ``ALLOWED_HOSTS`` is
refused (403), and ``LABEL_STUDIO_API_KEY`` is never sent to it. Every webhook that asks for work
is written to the spool (:mod:`backend.storage.spool`) before it is answered (507 when the disk
cannot take it) and replayed until its jobs are done (:mod:`backend.learning.intake`); one that
cannot be queued because Redis is down is answered 202.

With ``BASIC_AUTH_USER`` and ``BASIC_AUTH_PASS`` set, every route requires HTTP basic auth with
those credentials (set the same on the Label Studio model connection).
"""
from __future__ import annotations

import hmac
import logging
import time
import uuid
from pathlib import Path

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from ..common.errors import BackendError, BadRequest
from ..config import Settings, get_settings
from ..images.hosts import host_allowed
from ..inference.queueing import Runner, make_runner
from ..inference.runtime_state import runtime_warnings, served_version
from ..labelstudio.adapter import FCANetBackend
from ..labelstudio.client import Credentials
from ..learning.intake import ReconcileThread, WebhookIntake
from ..storage.registry import RegistryError
from ..storage.setup_credentials import SetupCredentials
from ..storage.spool import WebhookSpool
from .metrics import Metrics
from .validation import json_object, predict_request, setup_request

logger = logging.getLogger(__name__)

#: Routes logged at debug level only (Label Studio and Prometheus poll them).
QUIET_ROUTES = ("/", "/health", "/metrics")


def _json_body() -> dict:
    return json_object(request.get_data(cache=False))


def _check_setup_host(settings: Settings, hostname: str | None) -> None:
    """Without ``LABEL_STUDIO_URL``, a hostname from ``/setup`` must be in ``ALLOWED_HOSTS`` (403)."""
    if hostname and not settings.label_studio_url and not host_allowed(hostname, settings.allowed_hosts):
        raise BackendError(f"the Label Studio hostname {hostname!r} sent to /setup is not allowed: set "
                           "LABEL_STUDIO_URL to the Label Studio this backend serves, or list its host in "
                           "ALLOWED_HOSTS", status=403)


def _error_response(status: int, detail: str) -> Response:
    response = jsonify({"status": status, "detail": detail})
    response.status_code = status
    return response


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app; ``settings`` default to :func:`~backend.config.get_settings`.

    Without ``REDIS_URL`` this loads the model (in-process inference).
    """
    settings = settings or get_settings()
    runner = make_runner(settings)
    metrics = Metrics(runner)
    setups = SetupCredentials(settings.model_dir)
    intake = WebhookIntake(WebhookSpool(Path(settings.model_dir) / "spool"), settings)
    ReconcileThread(intake).start()
    app = Flask(__name__)
    app.config["FCANET_SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    _observe_requests(app, settings, metrics)
    _answer_errors(app, metrics)
    _add_routes(app, settings, runner, metrics, setups, intake)
    logger.info("app created", extra={"inference": "queue" if settings.queued else "in-process",
                                      "model_dir": settings.model_dir})
    return app


def _observe_requests(app: Flask, settings: Settings, metrics: Metrics) -> None:
    """Per request: an id, basic auth, the metrics and one log line."""

    @app.before_request
    def _start() -> Response | None:
        g.started = time.perf_counter()
        g.request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex[:12]
        metrics.in_flight.inc()
        if settings.basic_auth_user and not _authorized(settings):
            response = _error_response(401, "HTTP basic auth required: set the backend's BASIC_AUTH_USER/"
                                            "BASIC_AUTH_PASS on the Label Studio model connection")
            response.headers["WWW-Authenticate"] = 'Basic realm="fcanet-backend"'
            return response
        return None

    @app.after_request
    def _finish(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        metrics.observe(route, request.method, response.status_code, seconds)
        response.headers["X-Request-ID"] = g.get("request_id", "")
        level = logging.DEBUG if route in QUIET_ROUTES and response.status_code < 400 else logging.INFO
        logger.log(level, "request", extra={"route": route, "method": request.method, "status": response.status_code,
                                            "duration_ms": round(1000 * seconds, 1), "request_id": g.get("request_id")})
        return response

    @app.teardown_request
    def _teardown(exc: BaseException | None) -> None:
        metrics.in_flight.dec()


def _answer_errors(app: Flask, metrics: Metrics) -> None:
    """Every error becomes JSON ``{"status", "detail"}``; unexpected ones are logged with their traceback."""

    @app.errorhandler(BackendError)
    def _backend_error(exc: BackendError) -> Response:
        metrics.errors.labels(type(exc).__name__).inc()
        logger.warning("request failed", extra={"error": type(exc).__name__, "status": exc.status,
                                                "detail": exc.detail, "request_id": g.get("request_id")})
        return _error_response(exc.status, exc.detail)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return _error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        metrics.errors.labels(type(exc).__name__).inc()
        logger.exception("unexpected error", extra={"request_id": g.get("request_id")})
        return _error_response(500, f"internal error (request {g.get('request_id')}): the backend's log has "
                                    "the details")


def _add_routes(app: Flask, settings: Settings, runner: Runner, metrics: Metrics, setups: SetupCredentials,
                intake: WebhookIntake) -> None:
    """The protocol's routes: /health, /setup, /predict, /webhook, /metrics."""

    def backend(label_config: str | None = None, project: str | None = None) -> FCANetBackend:
        credentials = Credentials.resolve(settings, setups.get(project))
        return FCANetBackend(runner, settings, label_config=label_config, credentials=credentials)

    @app.get("/")
    @app.get("/health")
    def health() -> tuple[Response, int]:
        try:
            queue = runner.queue_state()
            version = runner.model_version
        except Exception as exc:  # noqa: BLE001 - /health tells DOWN whatever broke
            logger.exception("health check failed", extra={"request_id": g.get("request_id")})
            detail = exc.detail if isinstance(exc, BackendError) else (
                str(exc) if isinstance(exc, RegistryError) else
                f"internal error (request {g.get('request_id')}): the backend's log has the details")
            queue, version = {"up": False, "detail": detail}, None
        up = queue.pop("up")
        answer = {"status": "UP" if up else "DOWN", "model_class": FCANetBackend.__name__,
                  "model_version": version, "inference": "queue" if settings.queued else "in-process",
                  **queue}
        if up:
            answer["runtimes"] = runner.runtime_state()
            answer.update(served_version(version, answer["runtimes"]))
            fallbacks = runtime_warnings(answer["runtimes"])
            if fallbacks:
                answer["warnings"] = [*answer.get("warnings", []), *fallbacks]
        return jsonify(answer), 200 if answer["status"] == "UP" else 503

    @app.post("/setup")
    def setup() -> Response:
        body = setup_request(_json_body())
        _check_setup_host(settings, body.hostname)
        setups.remember(body.project, body.hostname, body.access_token)
        return jsonify({"model_version": backend(project=body.project).model_version})

    @app.post("/predict")
    def predict() -> Response:
        body = predict_request(_json_body())
        model = backend(body.label_config, body.project)
        return jsonify({"results": model.predict(body.tasks, context=body.context)})

    @app.post("/webhook")
    def webhook() -> tuple[Response, int]:
        body = _json_body()
        event = body.pop("action", None)
        if not isinstance(event, str) or not event:
            raise BadRequest("missing field 'action' (the webhook event name)")
        answer, status = intake.receive(event, body)
        return jsonify(answer), status

    @app.get("/metrics")
    def metrics_route() -> Response:
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)


def _authorized(settings: Settings) -> bool:
    try:
        auth = request.authorization
    except (ValueError, UnicodeError):                # bytes no client sends for basic auth: refused
        return False
    if auth is None or auth.type != "basic":
        return False
    user_ok = hmac.compare_digest((auth.username or "").encode(), (settings.basic_auth_user or "").encode())
    pass_ok = hmac.compare_digest((auth.password or "").encode(), (settings.basic_auth_pass or "").encode())
    return user_ok and pass_ok
