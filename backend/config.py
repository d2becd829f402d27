"""Backend settings: every knob is an environment variable with a documented default.

:func:`get_settings` reads them once per process (:meth:`Settings.from_env`; the fine-tuning knobs
into ``Settings.learning``, a :class:`LearningConfig`); the rest of the backend receives the frozen
:class:`Settings` object and never reads the environment itself. Secrets are left out of ``repr``.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, TypeVar

from .common.gate_rule import GateRule

T = TypeVar("T")

#: FCANET_RUNTIME values (those of :data:`fcanet_core.inference.runtime.RUNTIMES`, kept here so settings load without torch).
RUNTIMES = ("auto", "torch", "onnxruntime", "openvino")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

#: Environment variable of each :class:`LearningConfig` field.
LEARNING_ENV = {"steps": "FINETUNE_STEPS", "time_budget_s": "FINETUNE_TIME_BUDGET", "batch_size": "FINETUNE_BATCH_SIZE",
             "lr": "FINETUNE_LR", "crop": "FINETUNE_CROP", "holdout_fraction": "HOLDOUT_FRACTION",
             "min_examples": "MIN_TRAIN_EXAMPLES", "eval_max_clicks": "EVAL_MAX_CLICKS", "lock_ttl": "TRAIN_LOCK_TTL",
             "job_timeout": "TRAIN_JOB_TIMEOUT", "schedule": "TRAIN_SCHEDULE", "seed": "FINETUNE_SEED",
             "robot_rounds": "FINETUNE_ROBOT_ROUNDS", "gate_clicks": "GATE_CLICKS",
             "gate_confidence": "GATE_CONFIDENCE", "gate_margin": "GATE_MARGIN", "guard_margin": "GUARD_MARGIN",
             "guard_dir": "GUARD_DIR"}


@dataclass(frozen=True)
class LearningConfig:
    """Fine-tuning and scheduling knobs (environment variable names in :data:`LEARNING_ENV`)."""

    #: FINETUNE_STEPS, FINETUNE_BATCH_SIZE, FINETUNE_LR, FINETUNE_CROP: the fine-tuning recipe.
    steps: int = 240
    #: FINETUNE_TIME_BUDGET: seconds of training steps after which the run ends early, its learning
    #: rate decayed on time (0 = no budget: ``steps`` decide). The default keeps a CPU run of 100
    #: examples, gate included, under 10 minutes.
    time_budget_s: float = 330.0
    batch_size: int = 8
    #: Peak learning rate (poly decay). 0.01, the main recipe's peak, adapts to a new domain much
    #: faster than 0.002 (horses, 40 images: NoC@90 -48 % vs -16 %) at some cost on other domains.
    lr: float = 0.01
    crop: int = 256
    #: HOLDOUT_FRACTION: share of a project's annotations held out for evaluation (at least one).
    holdout_fraction: float = 0.2
    #: MIN_TRAIN_EXAMPLES: fewer examples than this → no fine-tuning.
    min_examples: int = 4
    #: EVAL_MAX_CLICKS: robot-user clicks per held-out instance.
    eval_max_clicks: int = 20
    #: TRAIN_LOCK_TTL: seconds a killed trainer keeps the project lock.
    lock_ttl: int = 60
    #: TRAIN_JOB_TIMEOUT: seconds a fine-tuning job may run (and wait for the lock).
    job_timeout: int = 3600
    #: TRAIN_SCHEDULE: cron expression (local time) of the scheduled fine-tuning.
    schedule: str = "0 3 * * *"
    #: FINETUNE_SEED: random seed of the fine-tuning run.
    seed: int = 0
    #: FINETUNE_ROBOT_ROUNDS: up to this many robot clicks on the model's own current predictions
    #: per training step (iterative training, as in the main recipe); 0 = simulated clicks only.
    robot_rounds: int = 0
    #: GATE_CLICKS, GATE_CONFIDENCE, GATE_MARGIN, GUARD_MARGIN: the promotion rule's numbers
    #: (:attr:`gate_rule`; bounds in :class:`backend.common.gate_rule.GateRule`).
    gate_clicks: int = GateRule.clicks
    gate_confidence: float = GateRule.confidence
    gate_margin: float = GateRule.margin
    guard_margin: float = GateRule.guard_margin
    #: GUARD_DIR: ``index.csv`` folder of the forgetting guard ("" = the set bundled with the model).
    guard_dir: str = ""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "crop", "min_examples", "eval_max_clicks", "lock_ttl", "job_timeout"):
            if getattr(self, name) < 1:
                raise ValueError(f"{LEARNING_ENV[name]} must be positive, got {getattr(self, name)}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"HOLDOUT_FRACTION must lie in (0, 1), got {self.holdout_fraction}")
        if self.min_examples < 2:
            raise ValueError("MIN_TRAIN_EXAMPLES must be at least 2 (one to train on, one to evaluate on)")
        if self.time_budget_s < 0:
            raise ValueError(f"FINETUNE_TIME_BUDGET must not be negative, got {self.time_budget_s}")
        if self.lr <= 0:
            raise ValueError(f"FINETUNE_LR must be positive, got {self.lr}")
        if self.robot_rounds < 0:
            raise ValueError(f"FINETUNE_ROBOT_ROUNDS must not be negative, got {self.robot_rounds}")
        self.gate_rule  # the rule's own bounds (GateRule raises on GATE_* / GUARD_MARGIN out of range)

    @property
    def gate_rule(self) -> GateRule:
        """The promotion rule with these numbers (bootstrap seeded with ``seed``)."""
        return GateRule(clicks=self.gate_clicks, confidence=self.gate_confidence, margin=self.gate_margin,
                        guard_margin=self.guard_margin, seed=self.seed)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "LearningConfig":
        """Read the knobs from ``environ`` (default ``os.environ``); malformed values raise ``ValueError``."""
        env = os.environ if environ is None else environ
        types = {f.name: type(getattr(cls(), f.name)) for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, var in LEARNING_ENV.items():
            raw = env.get(var, "").strip()
            if raw:
                try:
                    values[name] = types[name](raw)
                except ValueError:
                    kind = types[name].__name__
                    raise ValueError(f"environment variable {var}={raw!r} is not a valid {kind}") from None
        return cls(**values)


@dataclass(frozen=True)
class Settings:
    """Configuration of the web process, the workers and the command line.

    Env var names are given per field; see :meth:`from_env`.
    """

    #: MODEL_DIR: model versions, collected examples and other state.
    model_dir: str = "./model_data"
    #: FCANET_CHECKPOINT: the model used until a version is promoted ("default" = bundled lite0).
    fcanet_checkpoint: str = "default"
    #: REDIS_URL: queue server; unset means inference runs inside the web process.
    redis_url: str | None = field(default=None, repr=False)
    #: LABEL_STUDIO_URL (alias LABEL_STUDIO_HOST): Label Studio base URL for task images and the API.
    label_studio_url: str | None = None
    #: LABEL_STUDIO_API_KEY (alias LABEL_STUDIO_ACCESS_TOKEN): legacy token or personal access token.
    label_studio_api_key: str | None = field(default=None, repr=False)
    #: BASIC_AUTH_USER / BASIC_AUTH_PASS: HTTP basic auth required on every route when both are set.
    basic_auth_user: str | None = None
    basic_auth_pass: str | None = field(default=None, repr=False)
    #: DEVICE: "auto" (cuda when available, else cpu), "cpu", "cuda", "cuda:1", ...
    device: str = "auto"
    #: FCANET_RUNTIME: what runs the network: "auto" (on CPU OpenVINO, else ONNX Runtime, whichever is
    #: installed first, else torch; only exact runtimes), "torch" (fp32), "openvino" or "onnxruntime"
    #: (the version's ONNX artefact in fp32, exported when missing; a broken one falls back to torch,
    #: logged and shown in /health).
    runtime: str = "auto"
    #: TORCH_THREADS: CPU threads of each inference process (torch, ONNX Runtime, OpenVINO);
    #: 0 = torch's default (all cores).
    #: Set 1 when several workers share a small CPU: oversubscribed threads stall each other.
    torch_threads: int = 0
    #: FCANET_SIS: keep only mask components that contain a positive click.
    sis: bool = True
    #: FCANET_ZOOM_IN: after the first click, predict on the region around the clicks and the
    #: previous mask (better detail on large images; off = the official inference).
    zoom_in: bool = False
    #: FCANET_FLIP_AVERAGE: average the probabilities of the image and its mirror image (a second
    #: forward pass per click: about twice the network time).
    flip_average: bool = False
    #: FCANET_SHORT_SIDE: the network sees the image with this short side; unset = the model's own
    #: (512 for the official networks, 352 for the bundled lite0); smaller is faster and coarser.
    short_side: int | None = None
    #: FCANET_MAX_LONG_SIDE: the network input's long side is at most this many pixels, whatever
    #: the aspect ratio (a 20000x1 frame is not blown up to gigapixels); 0 = no bound.
    max_long_side: int = 2048
    #: MAX_CLICKS: most clicks (keypoints) one request may carry (400 beyond).
    max_clicks: int = 100
    #: LOCAL_FILES_DOCUMENT_ROOT: read /data/local-files/?d=... from this folder instead of over HTTP.
    local_files_document_root: str | None = None
    #: ALLOWED_HOSTS: extra hosts images may come from (comma separated, "host" or "host:port",
    #: "*" = any); the Label Studio host is always allowed.
    allowed_hosts: tuple[str, ...] = ()
    #: MAX_IMAGE_BYTES: largest image file accepted.
    max_image_bytes: int = 50 * 1024 * 1024
    #: MAX_IMAGE_PIXELS: largest image (width x height) accepted.
    max_image_pixels: int = 40_000_000
    #: IMAGE_CACHE_SIZE: decoded images kept per process (LRU), so repeated clicks do not re-download.
    image_cache_size: int = 16
    #: IMAGE_CACHE_BYTES: bytes of decoded pixels the image cache may hold per process (LRU).
    image_cache_bytes: int = 512 * 1024 * 1024
    #: IMAGE_DOWNLOAD_TIMEOUT: seconds one image download may take in all (connecting, redirects,
    #: every read), whatever the source does.
    download_timeout: float = 30.0
    #: MAX_REQUEST_BYTES: largest request body accepted (413).
    max_request_bytes: int = 100 * 1024 * 1024
    #: VERIFY_SSL: verify TLS certificates of image sources and Label Studio.
    verify_ssl: bool = True
    #: PREDICT_TIMEOUT: seconds the web process waits for a click's answer (queued or in-process).
    predict_timeout: float = 60.0
    #: PREDICT_REQUEST_TIMEOUT: seconds one ``/predict`` request may take in all, over every task
    #: it carries (Label Studio gives up after 100 s); tasks left when it passes get no prediction.
    predict_request_timeout: float = 90.0
    #: JOB_TIMEOUT: seconds a worker may spend on one inference job before it is stopped.
    job_timeout: int = 120
    #: WORKER_HEARTBEAT_TTL: a worker that has not sent a heartbeat for this many seconds is dead.
    worker_heartbeat_ttl: int = 10
    #: TRAIN_EVERY_N_EXAMPLES: new corrected masks that trigger a fine-tuning job.
    train_every_n_examples: int = 20
    #: FINETUNE_*, HOLDOUT_FRACTION, MIN_TRAIN_EXAMPLES, ...: see :class:`LearningConfig`.
    learning: LearningConfig = field(default_factory=LearningConfig)
    #: LOG_LEVEL and LOG_FORMAT ("json" or "text").
    log_level: str = "INFO"
    log_format: str = "json"
    #: PORT, WORKERS, THREADS: ``python -m backend serve`` (gunicorn) defaults. Each waiting click
    #: holds a thread, so ``THREADS`` bounds the clicks in flight; the rest (``/health`` too) queue.
    port: int = 9090
    workers: int = 1
    threads: int = 32

    def __post_init__(self) -> None:
        if self.label_studio_url and not self.label_studio_url.startswith(("http://", "https://")):
            raise ValueError(
                f"LABEL_STUDIO_URL must start with http:// or https://, got {self.label_studio_url!r}"
            )
        if bool(self.basic_auth_user) != bool(self.basic_auth_pass):
            raise ValueError("set both BASIC_AUTH_USER and BASIC_AUTH_PASS, or neither")
        if self.log_format not in ("json", "text"):
            raise ValueError(f"LOG_FORMAT must be 'json' or 'text', got {self.log_format!r}")
        for name in ("max_image_bytes", "max_image_pixels", "image_cache_size", "image_cache_bytes",
                     "max_request_bytes", "job_timeout", "worker_heartbeat_ttl", "train_every_n_examples", "port",
                     "workers", "threads"):
            if getattr(self, name) < (0 if name.startswith("image_cache") else 1):
                raise ValueError(f"{name.upper()} must be positive, got {getattr(self, name)}")
        if self.short_side is not None and self.short_side < 16:
            raise ValueError(f"FCANET_SHORT_SIDE must be at least 16, got {self.short_side}")
        if self.max_long_side < 0:
            raise ValueError(f"FCANET_MAX_LONG_SIDE must not be negative, got {self.max_long_side}")
        if self.max_clicks < 1:
            raise ValueError(f"MAX_CLICKS must be positive, got {self.max_clicks}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"FCANET_RUNTIME must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if self.torch_threads < 0:
            raise ValueError(f"TORCH_THREADS must not be negative, got {self.torch_threads}")
        for name in ("download_timeout", "predict_timeout", "predict_request_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name.upper()} must be positive, got {getattr(self, name)}")

    @property
    def queued(self) -> bool:
        """True when inference goes through Redis queues (``REDIS_URL`` set)."""
        return bool(self.redis_url)

    def predictor_options(self) -> dict[str, Any]:
        """How the backend predicts: the :class:`fcanet_core.Predictor` options these settings ask for."""
        return {"sis": self.sis, "zoom_in": self.zoom_in, "flip_average": self.flip_average,
                "short_side": self.short_side, "max_long_side": self.max_long_side or None}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Settings from ``environ`` (default ``os.environ``); a malformed value raises ``ValueError``."""
        env = os.environ if environ is None else environ

        def get(name: str, convert: Callable[[str], T], *aliases: str) -> T | None:
            for key in (name, *aliases):
                raw = env.get(key)
                if raw is not None and raw.strip() != "":
                    try:
                        return convert(raw.strip())
                    except ValueError as exc:
                        raise ValueError(f"environment variable {key}={raw!r} is invalid: {exc}") from None
            return None

        values = {
            "model_dir": get("MODEL_DIR", str),
            "fcanet_checkpoint": get("FCANET_CHECKPOINT", str),
            "redis_url": get("REDIS_URL", str),
            "label_studio_url": get("LABEL_STUDIO_URL", _url, "LABEL_STUDIO_HOST"),
            "label_studio_api_key": get("LABEL_STUDIO_API_KEY", str, "LABEL_STUDIO_ACCESS_TOKEN"),
            "basic_auth_user": get("BASIC_AUTH_USER", str),
            "basic_auth_pass": get("BASIC_AUTH_PASS", str),
            "device": get("DEVICE", str),
            "runtime": get("FCANET_RUNTIME", str.lower),
            "torch_threads": get("TORCH_THREADS", int),
            "sis": get("FCANET_SIS", parse_bool),
            "zoom_in": get("FCANET_ZOOM_IN", parse_bool),
            "flip_average": get("FCANET_FLIP_AVERAGE", parse_bool),
            "short_side": get("FCANET_SHORT_SIDE", int),
            "max_long_side": get("FCANET_MAX_LONG_SIDE", int),
            "max_clicks": get("MAX_CLICKS", int),
            "local_files_document_root": get("LOCAL_FILES_DOCUMENT_ROOT", str),
            "allowed_hosts": get("ALLOWED_HOSTS", _host_list),
            "max_image_bytes": get("MAX_IMAGE_BYTES", int),
            "max_image_pixels": get("MAX_IMAGE_PIXELS", int),
            "image_cache_size": get("IMAGE_CACHE_SIZE", int),
            "image_cache_bytes": get("IMAGE_CACHE_BYTES", int),
            "download_timeout": get("IMAGE_DOWNLOAD_TIMEOUT", float),
            "max_request_bytes": get("MAX_REQUEST_BYTES", int),
            "verify_ssl": get("VERIFY_SSL", parse_bool),
            "predict_timeout": get("PREDICT_TIMEOUT", float),
            "predict_request_timeout": get("PREDICT_REQUEST_TIMEOUT", float),
            "job_timeout": get("JOB_TIMEOUT", int),
            "worker_heartbeat_ttl": get("WORKER_HEARTBEAT_TTL", int),
            "train_every_n_examples": get("TRAIN_EVERY_N_EXAMPLES", int),
            "log_level": get("LOG_LEVEL", str.upper),
            "log_format": get("LOG_FORMAT", str.lower),
            "port": get("PORT", int),
            "workers": get("WORKERS", int),
            "threads": get("THREADS", int),
        }
        values = {k: v for k, v in values.items() if v is not None}
        return cls(learning=LearningConfig.from_env(env), **values)


@functools.cache
def get_settings() -> Settings:
    """This process's settings, read from its environment on the first call."""
    return Settings.from_env()


def parse_bool(text: str) -> bool:
    """``1/true/yes/on`` → True, ``0/false/no/off`` → False (case-insensitive), else ``ValueError``."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"expected a boolean (true/false), got {text!r}")


def _url(text: str) -> str:
    return text.rstrip("/")


def _host_list(text: str) -> tuple[str, ...]:
    return tuple(h.strip().lower() for h in text.split(",") if h.strip())
