"""The Docker files run only what the code provides.

Docker itself is not run: the compose file is parsed with PyYAML, every command it or a
Dockerfile runs is checked against the code (``python -m backend ...`` through backend.cli's own
parser, gunicorn targets imported), and every COPY source must exist in the build context and
not be excluded by ``.dockerignore``.
"""
from __future__ import annotations

import fnmatch
import importlib
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from gunicorn.config import Config

from backend import cli
from backend.inference.queueing import QUEUE_NAMES

REPO_ROOT = Path(__file__).resolve().parents[3]
DOCKER_DIR = REPO_ROOT / "docker"
COMPOSE = DOCKER_DIR / "docker-compose.yml"
DOCKERFILES = sorted(DOCKER_DIR.glob("Dockerfile.*"))
BACKEND_SERVICES = ("web", "inference-worker", "training-worker", "scheduler")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture
def queued_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Environment of a web process with a queue (as in the stack): importing the app loads no model."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "model_data"))


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _argv(command: str | list[str]) -> list[str]:
    """A compose/Dockerfile command as argv (exec form as is, shell form split)."""
    if isinstance(command, list):
        return [str(a) for a in command]
    command = command.strip()
    return json.loads(command) if command.startswith("[") else shlex.split(command)


def _check_command(argv: list[str]) -> None:
    """Fail unless ``argv`` is something this repository can run."""
    if argv[:3] == ["python", "-m", "backend"]:
        try:
            args = cli.build_parser().parse_args(argv[3:])
        except SystemExit as exc:
            pytest.fail(f"backend.cli rejects {argv[3:]} (exit {exc.code})")
        assert callable(getattr(args, "func", None)), f"{argv}: subcommand has no handler"
    elif argv[0] == "gunicorn":
        parsed = Config().parser().parse_args(argv[1:])
        assert len(parsed.args) == 1, f"{argv}: expected one WSGI target, got {parsed.args}"
        module, _, attr = parsed.args[0].partition(":")
        app = getattr(importlib.import_module(module), attr or "application")
        assert callable(app), f"{parsed.args[0]} is not a WSGI application"
    else:
        pytest.fail(f"unknown command {argv}")


def _matches(path: str, pattern: str) -> bool:
    """One ``.dockerignore`` pattern against one path (``**/`` = any folder depth)."""
    if pattern.startswith("**/"):
        rest = pattern[3:]
        return fnmatch.fnmatchcase(path, rest) or fnmatch.fnmatchcase(path, f"*/{rest}")
    return fnmatch.fnmatchcase(path, pattern)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether ``.dockerignore`` patterns exclude ``path`` (or a folder above it); last match wins."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if any(_matches(c, pattern) for c in candidates):
            ignored = not negate
    return ignored


def test_compose_defines_the_stack(compose: dict) -> None:
    services = compose["services"]
    assert set(services) >= {"redis", *BACKEND_SERVICES, "label-studio"}
    assert services["label-studio"]["profiles"] == ["labelstudio"]
    assert all("profiles" not in services[name] for name in ("redis", *BACKEND_SERVICES))


@pytest.mark.parametrize("service", BACKEND_SERVICES)
def test_compose_commands_exist_in_the_code(compose: dict, service: str, queued_env: None) -> None:
    _check_command(_argv(compose["services"][service]["command"]))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_default_commands_exist_in_the_code(dockerfile: Path, queued_env: None) -> None:
    commands = [args for keyword, args in _dockerfile_instructions(dockerfile) if keyword == "CMD"]
    assert commands, f"{dockerfile.name} has no CMD"
    _check_command(_argv(commands[-1]))


def test_workers_serve_every_queue_the_backend_uses(compose: dict) -> None:
    served: dict[str, set[str]] = {}
    for name in ("inference-worker", "training-worker"):
        argv = _argv(compose["services"][name]["command"])
        served[name] = set(argv[argv.index("--queues") + 1].split(","))
    assert served["inference-worker"] == {"inference", "batch"}
    assert served["training-worker"] == {"training"}
    assert set().union(*served.values()) == set(QUEUE_NAMES)


@pytest.mark.parametrize("service", ("inference-worker", "training-worker"))
def test_workers_reserve_a_gpu_and_use_the_cuda_image(compose: dict, service: str) -> None:
    spec = compose["services"][service]
    devices = spec["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] and d["driver"] == "nvidia" for d in devices)
    assert spec["build"]["dockerfile"] == "docker/Dockerfile.cuda"
    assert spec["environment"]["DEVICE"] == "cuda"


def test_backend_services_share_the_model_dir_volume_and_redis(compose: dict) -> None:
    for name in BACKEND_SERVICES:
        spec = compose["services"][name]
        model_dir = spec["environment"]["MODEL_DIR"]
        assert f"model_data:{model_dir}" in spec["volumes"], name
        assert spec["environment"]["REDIS_URL"].startswith("redis://redis:"), name
        assert "redis" in spec["depends_on"], name
    assert "model_data" in compose["volumes"]


@pytest.mark.parametrize("service", BACKEND_SERVICES)
def test_compose_builds_use_existing_dockerfiles(compose: dict, service: str) -> None:
    build = compose["services"][service]["build"]
    context = (DOCKER_DIR / build["context"]).resolve()
    assert context == REPO_ROOT
    assert (context / build["dockerfile"]).is_file()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copy_sources_exist_and_are_not_dockerignored(dockerfile: Path) -> None:
    patterns = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    copies = [args for keyword, args in _dockerfile_instructions(dockerfile) if keyword in ("COPY", "ADD")]
    assert copies
    for args in copies:
        sources = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
        for source in sources:
            assert (REPO_ROOT / source).exists(), f"{dockerfile.name}: COPY source {source} does not exist"
            assert not _ignored(source, patterns), f"{dockerfile.name}: COPY source {source} is in .dockerignore"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_install_the_locked_torch_and_runtime_dependencies_only(dockerfile: Path) -> None:
    lock = (REPO_ROOT / "constraints.txt").read_text().splitlines()
    assert "torch==2.13.0" in lock
    pip_lines = [args for keyword, args in _dockerfile_instructions(dockerfile) if keyword == "RUN" and "pip install" in args]
    torch_install = next(args for args in pip_lines if re.search(r"-c constraints\.txt torch\b", args))
    assert "TORCH_INDEX" in torch_install
    dependencies = next(args for args in pip_lines if "scripts/dependencies.py" in args)
    assert re.search(r"python scripts/dependencies\.py >", dependencies), "the images install no extras"
    assert "-c constraints.txt -r requirements.txt" in dependencies


def test_dockerignore_check_itself() -> None:
    patterns = [".venv", "**/__pycache__", "tests", "models/*.tmp", "!models/keep.tmp"]
    assert _ignored(".venv/bin/python", patterns)
    assert _ignored("backend/__pycache__/x.pyc", patterns)
    assert _ignored("models/a.tmp", patterns)
    assert not _ignored("models/keep.tmp", patterns)
    assert not _ignored("backend/web/app.py", patterns)
    assert not _ignored("models/fcanet_lite0.pt", patterns)


def test_web_serving_knobs_have_one_default(compose: dict) -> None:
    """The images, the compose file and scripts/serve.sh all run ``python -m backend serve`` with no
    knob of their own, so THREADS, WORKERS and PORT take backend/config.py's defaults everywhere."""
    web = _argv(compose["services"]["web"]["command"])
    cpu_cmd = [args for keyword, args in _dockerfile_instructions(DOCKER_DIR / "Dockerfile.cpu") if keyword == "CMD"]
    assert web == _argv(cpu_cmd[-1]) == ["python", "-m", "backend", "serve"]
    serve_sh = (REPO_ROOT / "scripts" / "serve.sh").read_text()
    assert re.search(r'"\$PY" -m backend serve --host "\$HOST" --port "\$PORT" &', serve_sh)
    assert "THREADS" not in serve_sh.replace("TORCH_THREADS", "")
    assert {"THREADS", "WORKERS"} <= set(compose["services"]["web"]["environment"])
