"""The package layout: small folders and modules, no import cycles, no test code in the shipped packages."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.backend.scenarios.test_docker import _ignored
from tests.conftest import REPO_ROOT

PACKAGES = ("backend", "fcanet_core")
MAX_MODULES_PER_FOLDER = 12


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
