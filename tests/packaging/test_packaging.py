"""The package as pip builds it: every subpackage and the bundled model in the wheel, the
dependency lists the scripts and images install, and the bundled model found once installed."""
from __future__ import annotations

import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from fcanet_core.modeling import bundled

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import dependencies  # noqa: E402


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel ``pip install .`` would install (built from a copy, so the checkout stays clean)."""
    out = tmp_path_factory.mktemp("wheel")
    src = tmp_path_factory.mktemp("src")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (REPO_ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((REPO_ROOT / name).read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(src)], check=True, capture_output=True, text=True)
    return zipfile.ZipFile(next(out.glob("fcanet_backend-*.whl")))


def test_wheel_holds_every_package_and_subpackage(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    packages = sorted(p.parent.relative_to(REPO_ROOT).as_posix()
                      for top in ("backend", "fcanet_core") for p in (REPO_ROOT / top).rglob("__init__.py"))
    assert len(packages) > 2
    missing = [p for p in packages if f"{p}/__init__.py" not in names]
    assert not missing, f"subpackages left out of the wheel: {missing}"
    assert not any(n.startswith(("tests/", "scripts/", "docker/")) for n in names)


def test_wheel_ships_the_bundled_model_where_fcanet_core_looks(wheel: zipfile.ZipFile) -> None:
    data = {n.split(".data/data/", 1)[1]: n for n in wheel.namelist() if ".data/data/" in n}
    model = f"{bundled.INSTALLED_SUBDIR.as_posix()}/fcanet_lite0.pt"
    assert wheel.getinfo(data[model]).file_size == (REPO_ROOT / "models" / "fcanet_lite0.pt").stat().st_size
    guard = {p.name for p in (REPO_ROOT / "models" / "guard").iterdir()}
    assert set(data) == {model} | {f"{bundled.INSTALLED_SUBDIR.as_posix()}/guard/{name}" for name in guard}


def test_installed_model_is_found_without_a_source_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    installed = tmp_path / bundled.INSTALLED_SUBDIR / bundled.BUNDLED_NAME
    installed.parent.mkdir(parents=True)
    installed.write_bytes(b"weights")
    monkeypatch.setattr(bundled, "__file__", str(tmp_path / "site-packages" / "fcanet_core" / "modeling" / "bundled.py"))
    monkeypatch.setattr(sysconfig, "get_path", lambda name, scheme=None: str(tmp_path))
    assert bundled.bundled_model_path() == installed


def test_source_checkout_model_comes_first() -> None:
    assert bundled.bundled_model_path() == REPO_ROOT / "models" / "fcanet_lite0.pt"


def test_dependencies_lists_runtime_then_extras_once() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    runtime = dependencies.requirements([])
    assert runtime == project["dependencies"]
    with_extras = dependencies.requirements(["test", "cvat"])
    assert with_extras[:len(runtime)] == runtime
    assert len(with_extras) == len(set(with_extras))
    assert "nuclio-sdk==0.6.3" in with_extras and not any(r.startswith("pytest") for r in runtime)
    with pytest.raises(KeyError, match="unknown extra"):
        dependencies.requirements(["gpu"])


def test_lock_pins_every_requirement_within_its_bounds() -> None:
    lock = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            lock[canonicalize_name(name)] = version
    for text in dependencies.requirements(["test", "cvat", "plot"]):
        requirement = Requirement(text)
        version = lock.get(canonicalize_name(requirement.name))
        assert version is not None, f"{requirement.name} is not in constraints.txt"
        assert requirement.specifier.contains(version, prereleases=True), f"{requirement} excludes the lock's {version}"
