"""Settings from the environment: defaults, every variable, aliases, and clear errors."""
from __future__ import annotations

from dataclasses import fields

import pytest

from backend.common.gate_rule import GateRule
from backend.config import LearningConfig, Settings, get_settings

EVERY_VARIABLE = {
    "MODEL_DIR": "/data/models", "FCANET_CHECKPOINT": "/m.pt", "REDIS_URL": "redis://r:6379/2",
    "LABEL_STUDIO_URL": "http://ls:8080/", "LABEL_STUDIO_API_KEY": "k", "BASIC_AUTH_USER": "u",
    "BASIC_AUTH_PASS": "p", "DEVICE": "cuda:1", "FCANET_SIS": "false", "FCANET_ZOOM_IN": "yes", "FCANET_FLIP_AVERAGE": "on",
    "FCANET_SHORT_SIDE": "384", "LOCAL_FILES_DOCUMENT_ROOT": "/files", "ALLOWED_HOSTS": " A.example , b:9000 ",
    "MAX_IMAGE_BYTES": "1000", "MAX_IMAGE_PIXELS": "2000", "IMAGE_CACHE_SIZE": "3", "IMAGE_CACHE_BYTES": "4096",
    "IMAGE_DOWNLOAD_TIMEOUT": "4.5", "MAX_REQUEST_BYTES": "5000",
    "VERIFY_SSL": "0", "PREDICT_TIMEOUT": "9.5", "JOB_TIMEOUT": "7", "WORKER_HEARTBEAT_TTL": "4",
    "TRAIN_EVERY_N_EXAMPLES": "5", "LOG_LEVEL": "debug", "LOG_FORMAT": "TEXT", "PORT": "9191", "WORKERS": "2",
    "THREADS": "3", "TORCH_THREADS": "1", "FINETUNE_STEPS": "9", "FCANET_MAX_LONG_SIDE": "1000", "MAX_CLICKS": "7",
    "PREDICT_REQUEST_TIMEOUT": "8.5", "FCANET_RUNTIME": "Torch",
}


def test_no_environment_gives_the_documented_defaults():
    settings = Settings.from_env({})
    assert settings == Settings()
    assert (settings.model_dir, settings.fcanet_checkpoint, settings.redis_url, settings.device) == \
        ("./model_data", "default", None, "auto")
    assert not settings.queued and settings.port == 9090 and settings.allowed_hosts == ()


def test_every_setting_has_its_variable():
    settings = Settings.from_env(EVERY_VARIABLE)
    unchanged = [f.name for f in fields(Settings) if getattr(settings, f.name) == getattr(Settings(), f.name)]
    assert unchanged == []
    assert settings.allowed_hosts == ("a.example", "b:9000")
    assert settings.label_studio_url == "http://ls:8080" and settings.log_level == "DEBUG"
    assert settings.queued


def test_runtime_names_are_the_libraries():
    from backend.config import RUNTIMES
    from fcanet_core.inference.runtime import RUNTIMES as LIBRARY_RUNTIMES

    assert RUNTIMES == LIBRARY_RUNTIMES and Settings().runtime == "auto"


def test_legacy_aliases_and_blank_values():
    settings = Settings.from_env({"LABEL_STUDIO_HOST": "https://ls", "LABEL_STUDIO_ACCESS_TOKEN": "t",
                                  "REDIS_URL": "  "})
    assert (settings.label_studio_url, settings.label_studio_api_key, settings.redis_url) == ("https://ls", "t", None)


@pytest.mark.parametrize("env, message", [
    ({"MAX_IMAGE_BYTES": "lots"}, "MAX_IMAGE_BYTES='lots' is invalid"),
    ({"VERIFY_SSL": "maybe"}, "VERIFY_SSL='maybe' is invalid"),
    ({"LABEL_STUDIO_URL": "localhost:8080"}, "must start with http"),
    ({"BASIC_AUTH_USER": "only-user"}, "both BASIC_AUTH_USER and BASIC_AUTH_PASS"),
    ({"PORT": "0"}, "PORT must be positive"),
    ({"PREDICT_TIMEOUT": "0"}, "PREDICT_TIMEOUT must be positive"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
    ({"TORCH_THREADS": "-1"}, "TORCH_THREADS must not be negative"),
    ({"FCANET_SHORT_SIDE": "8"}, "FCANET_SHORT_SIDE must be at least 16"),
    ({"FCANET_RUNTIME": "tensorrt"}, "FCANET_RUNTIME must be one of auto, torch, onnxruntime, openvino"),
])
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_secrets_stay_out_of_repr():
    text = repr(Settings.from_env(EVERY_VARIABLE))
    assert "redis://r" not in text and "'k'" not in text and "'p'" not in text


def test_learning_config_reads_and_checks_the_environment() -> None:
    cfg = LearningConfig.from_env({"FINETUNE_STEPS": "7", "FINETUNE_LR": "0.01", "TRAIN_SCHEDULE": "0 4 * * *",
                                   "FINETUNE_ROBOT_ROUNDS": "2"})
    assert (cfg.steps, cfg.lr, cfg.schedule, cfg.batch_size, cfg.robot_rounds) == (7, 0.01, "0 4 * * *", 8, 2)
    with pytest.raises(ValueError, match="FINETUNE_ROBOT_ROUNDS"):
        LearningConfig.from_env({"FINETUNE_ROBOT_ROUNDS": "-1"})
    with pytest.raises(ValueError, match="FINETUNE_STEPS"):
        LearningConfig.from_env({"FINETUNE_STEPS": "many"})
    with pytest.raises(ValueError, match="HOLDOUT_FRACTION"):
        LearningConfig.from_env({"HOLDOUT_FRACTION": "1.5"})
    assert Settings.from_env({"FINETUNE_STEPS": "7"}).learning.steps == 7


def test_get_settings_reads_the_environment_once(monkeypatch):
    monkeypatch.setenv("MODEL_DIR", "/srv/first")
    first = get_settings()
    monkeypatch.setenv("MODEL_DIR", "/srv/second")
    assert get_settings() is first and first.model_dir == "/srv/first"
    gate = LearningConfig.from_env({"GATE_CLICKS": "3", "GATE_CONFIDENCE": "0.9", "GATE_MARGIN": "0.02",
                                    "GUARD_MARGIN": "0.05", "GUARD_DIR": "/data/guard"})
    assert (gate.gate_clicks, gate.gate_confidence, gate.gate_margin, gate.guard_margin, gate.guard_dir) == (
        3, 0.9, 0.02, 0.05, "/data/guard")
    assert gate.gate_rule == GateRule(clicks=3, confidence=0.9, margin=0.02, guard_margin=0.05, seed=0)
    with pytest.raises(ValueError, match="GATE_CONFIDENCE"):
        LearningConfig.from_env({"GATE_CONFIDENCE": "1.2"})
    with pytest.raises(ValueError, match="GUARD_MARGIN"):
        LearningConfig.from_env({"GUARD_MARGIN": "-0.1"})
