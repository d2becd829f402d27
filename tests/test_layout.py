"""The package layout: small folders and modules, no import cycles, no test code in the shipped packages."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.backend.scenarios.test_docker import _ignored
from tests.conftest import REPO_ROOT

PACKAGES = ("backend", "fcanet_core")
MAX_MODULES_PER_FOLDER = 12
#: Where each package's tests live: ``backend/a/b.py`` is tested in ``tests/backend/a/test_b.py``.
TEST_ROOTS = {"backend": "tests/backend", "fcanet_core": "tests/core"}

#: Modules with no behaviour of their own to test, so no test module of their own.
WITHOUT_BEHAVIOUR = {
    "backend/__main__.py": "entry point: runs backend.cli.main (tests/backend/test_cli.py)",
    "backend/bench/__main__.py": "entry point: runs backend.bench.load.main (tests/backend/bench/test_load.py)",
    "backend/_wsgi.py": "entry point: the WSGI app of backend.web.app for gunicorn (tests/backend/web/test_app.py)",
    "backend/cvat_bench.py": "old command name, re-exports backend.bench.cvat (tests/backend/bench/test_cvat.py)",
    "backend/learning_bench.py": "old command name, re-exports backend.bench.learning",
    "backend/roundtrip_bench.py": "entry point: runs backend.bench.roundtrip.main (tests/backend/bench/test_roundtrip.py)",
    "backend/learning/status.py": "data only: the learning path's enumerations",
}

#: Behaviour modules still exercised only through other modules' tests (named here); each is to get
#: a test module of its own, and then leaves this list (the test below fails on a stale entry).
TESTED_ELSEWHERE = {
    "backend/bench/annotator.py": "tests/backend/labelstudio/test_prompts.py and the e2e tests use it",
    "backend/bench/labelstudio_server.py": "tests/e2e (every Label Studio test) and tests/backend/bench/test_roundtrip.py",
    "backend/bench/learning.py": "tests/e2e (the learning benchmark's documented run)",
    "backend/inference/image_waits.py": "tests/backend/scenarios/test_deadlines.py (clicks set aside on one worker)",
    "backend/inference/prefetch.py": "tests/backend/scenarios/test_edges.py",
    "backend/labelstudio/adapter.py": "tests/backend/web/test_app.py and tests/e2e",
    "backend/learning/intake.py": "tests/backend/conftest.py, tests/backend/scenarios/test_durability.py",
    "backend/learning/state.py": "tests/backend/learning/test_finetune.py",
    "backend/storage/setup_credentials.py":
        "tests/backend/web/test_app.py, tests/backend/scenarios/test_truthful_state.py",
    "fcanet_core/inference/onnx_export.py": "tests/core/inference/test_runtime.py",
    "fcanet_core/inference/runtime_bench.py": "tests/core/test_bench.py",
    "fcanet_core/inference/runtime_check.py": "tests/core/inference/test_runtime.py",
    "fcanet_core/modeling/fcanet.py": "tests/core/modeling/test_model_official.py",
    "fcanet_core/modeling/heads.py": "tests/core/modeling/test_model_official.py",
    "fcanet_core/modeling/res2net.py": "tests/core/modeling/test_model_official.py",
    "fcanet_core/modeling/resnet.py": "tests/core/modeling/test_model_official.py",
    "fcanet_core/training/finetune.py": "tests/backend/learning/test_finetune.py",
    "fcanet_core/training/trainer.py": "tests/core/test_train.py (the command's runs are the trainer's)",
}


def _modules() -> dict[str, Path]:
    """Every module of the shipped packages by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported(name: str, path: Path) -> set[str]:
    """The modules ``name`` imports at its top level, resolved to dotted names (ancestors included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            targets.add(module)
            targets.update(f"{module}.{alias.name}" for alias in node.names)
    with_ancestors = set()
    for target in targets:
        parts = target.split(".")
        with_ancestors.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {t for t in with_ancestors if t != name and not name.startswith(t + ".")}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_folder_holds_more_than_twelve_modules(package: str) -> None:
    for folder in [REPO_ROOT / package, *(p for p in (REPO_ROOT / package).rglob("*") if p.is_dir())]:
        if folder.name != "__pycache__":
            assert len(list(folder.glob("*.py"))) <= MAX_MODULES_PER_FOLDER, folder


def test_modules_and_functions_stay_short() -> None:
    for path in _modules().values():
        source = path.read_text()
        assert len(source.splitlines()) <= 400, path
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno - node.lineno + 1 <= 80, f"{path}: {node.name}"


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {name: _imported(name, path) & modules.keys() for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        assert name not in trail, " -> ".join([*trail, name])
        if name not in done:
            for target in sorted(graph[name]):
                visit(target, (*trail, name))
            done.add(name)

    for name in sorted(graph):
        visit(name, ())


def test_shipped_packages_import_no_test_code() -> None:
    for name, path in _modules().items():
        for target in _imported(name, path):
            assert target.split(".")[0] not in ("tests", "pytest"), f"{name} imports {target}"


def test_images_contain_no_tests_and_no_benchmark_harness() -> None:
    patterns = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for path in ("tests/conftest.py", "backend/bench/harness.py", "backend/cvat_bench.py", "backend/learning_bench.py"):
        assert _ignored(path, patterns), path
    for path in ("backend/web/app.py", "backend/jobs/__init__.py", "fcanet_core/train.py"):
        assert not _ignored(path, patterns), path


def _test_module(path: str) -> Path:
    package, _, rest = path.partition("/")
    module = Path(rest)
    return REPO_ROOT / TEST_ROOTS[package] / module.parent / f"test_{module.name}"


def test_every_behaviour_module_has_its_test_module() -> None:
    modules = [str(p.relative_to(REPO_ROOT)) for p in _modules().values() if p.name != "__init__.py"]
    missing = [m for m in modules if not _test_module(m).is_file()]
    unlisted = sorted(set(missing) - WITHOUT_BEHAVIOUR.keys() - TESTED_ELSEWHERE.keys())
    assert not unlisted, f"modules without tests/<package path>/test_<module>.py: {unlisted}"
    stale = sorted((WITHOUT_BEHAVIOUR.keys() | TESTED_ELSEWHERE.keys()) - set(missing))
    assert not stale, f"listed as untested but gone or tested now (remove them from the lists): {stale}"
    for module, where in TESTED_ELSEWHERE.items():
        named = [w for w in where.replace(",", " ").split() if w.startswith("tests/") and w.endswith(".py")]
        assert all((REPO_ROOT / w).is_file() for w in named), f"{module}: {where}"
