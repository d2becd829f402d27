"""Model registry: immutable versions, atomic current pointer, promote / rollback, CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from backend.storage.registry import DEFAULT_NAME, ModelRegistry, RegistryError
from fcanet_core import load_model

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def tiny_model(tiny_checkpoint: Path) -> torch.nn.Module:
    return load_model(tiny_checkpoint)


def add(registry: ModelRegistry, model: torch.nn.Module, name: str, parent: str | None = DEFAULT_NAME):
    return registry.add_candidate(model, name=name, parent=parent, data={"project": "1"},
                                  metrics={"noc90": 5.0}, recipe={"steps": 3})


def test_empty_registry_serves_the_default_model(tmp_path: Path, tiny_checkpoint: Path) -> None:
    assert ModelRegistry(tmp_path, "default").current().name == DEFAULT_NAME
    assert ModelRegistry(tmp_path, "default").current().checkpoint == "default"
    custom = ModelRegistry(tmp_path, str(tiny_checkpoint)).current()
    assert (custom.name, custom.checkpoint) == ("tiny-lite0", str(tiny_checkpoint))
    assert [v.name for v in ModelRegistry(tmp_path, "default").list()] == [DEFAULT_NAME]


def test_candidate_is_a_complete_read_only_folder_loadable_with_its_metadata(tmp_path: Path, tiny_model) -> None:
    registry = ModelRegistry(tmp_path, "default")
    version = add(registry, tiny_model, "cand-1")
    folder = tmp_path / "versions" / "cand-1"
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "model.pt", "version.json"]
    assert all((p.stat().st_mode & 0o222) == 0 for p in folder.iterdir())
    meta = json.loads((folder / "version.json").read_text())
    assert (meta["parent"], meta["metrics"], meta["data"]) == (DEFAULT_NAME, {"noc90": 5.0}, {"project": "1"})
    loaded = load_model(version.checkpoint)
    assert loaded.meta["name"] == "cand-1" and loaded.arch == "lite0"
    for (key, a), b in zip(tiny_model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), key
    assert registry.current().name == DEFAULT_NAME, "adding a candidate must not promote it"


def test_versions_are_immutable(tmp_path: Path, tiny_model) -> None:
    registry = ModelRegistry(tmp_path, "default")
    add(registry, tiny_model, "cand-1")
    before = (tmp_path / "versions" / "cand-1" / "model.pt").read_bytes()
    with pytest.raises(RegistryError, match="immutable"):
        add(registry, tiny_model, "cand-1")
    with pytest.raises(RegistryError, match="reserved"):
        add(registry, tiny_model, DEFAULT_NAME)
    assert (tmp_path / "versions" / "cand-1" / "model.pt").read_bytes() == before


def test_a_failed_save_leaves_no_version_behind(tmp_path: Path, tiny_model) -> None:
    registry = ModelRegistry(tmp_path, "default")
    with pytest.raises(ValueError, match="JSON"):
        registry.add_candidate(tiny_model, name="bad", parent=None, data={"x": object()}, metrics={})
    assert [v.name for v in registry.list()] == [DEFAULT_NAME]
    assert list((tmp_path / "versions").iterdir()) == []


def test_promote_and_rollback_walk_the_history(tmp_path: Path, tiny_model) -> None:
    registry = ModelRegistry(tmp_path, "default")
    add(registry, tiny_model, "v1")
    add(registry, tiny_model, "v2", parent="v1")
    assert registry.promote("v1").name == "v1"
    registry.promote("v2")
    assert registry.current().name == "v2"
    assert json.loads((tmp_path / "current.json").read_text()) == {"current": "v2", "history": [DEFAULT_NAME, "v1"]}
    assert registry.rollback().name == "v1"
    assert registry.rollback().name == DEFAULT_NAME
    assert registry.current().checkpoint == "default"
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback()
    registry.promote("v2")
    assert ModelRegistry(tmp_path, "default").current().checkpoint == str(tmp_path / "versions" / "v2" / "model.pt")


def test_earlier_versions_are_the_history_newest_first_then_the_default_each_once(tmp_path: Path,
                                                                               tiny_model) -> None:
    registry = ModelRegistry(tmp_path, "default")
    assert registry.earlier_versions() == []                   # the default serves: nothing earlier
    add(registry, tiny_model, "v1")
    add(registry, tiny_model, "v2", parent="v1")
    registry.promote("v1")
    registry.promote("v2")
    registry.promote("v1")
    (tmp_path / "current.json").write_text(json.dumps({"current": "v1", "history": [
        DEFAULT_NAME, "gone", "v1", "v2"]}))                   # a removed version and the current one in it
    assert [v.name for v in registry.earlier_versions()] == ["v2", DEFAULT_NAME]


def test_promote_refuses_unknown_names_and_a_changed_current(tmp_path: Path, tiny_model) -> None:
    registry = ModelRegistry(tmp_path, "default")
    add(registry, tiny_model, "v1")
    add(registry, tiny_model, "v2")
    for bad in ("missing", "../versions", "a/b", ""):
        with pytest.raises(RegistryError):
            registry.promote(bad)
    registry.promote("v1")
    with pytest.raises(RegistryError, match="not promoted"):
        registry.promote("v2", expected_current=DEFAULT_NAME)
    assert registry.current().name == "v1"
    assert registry.promote("v2", expected_current="v1").name == "v2"


def test_readers_never_see_a_partial_pointer(tmp_path: Path, tiny_model) -> None:
    registry = ModelRegistry(tmp_path, "default")
    add(registry, tiny_model, "v1")
    seen: set[str] = set()
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        reader = ModelRegistry(tmp_path, "default")
        while not done.is_set():
            try:
                seen.add(reader.current().name)
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    for _ in range(100):
        registry.promote("v1")
        registry.rollback()
    done.set()
    thread.join()
    assert errors == [] and seen <= {"v1", DEFAULT_NAME}


def test_new_names_are_valid_and_distinct(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path, "default")
    names = {registry.new_name("lite0", "12") for _ in range(20)}
    assert len(names) == 20 and all(n.startswith("fcanet-lite0-p12-") for n in names)


@pytest.mark.slow
def test_versions_command_line(tmp_path: Path, tiny_model) -> None:
    registry = ModelRegistry(tmp_path, "default")
    add(registry, tiny_model, "v1")
    env = {**os.environ, "MODEL_DIR": str(tmp_path), "LOG_FORMAT": "text"}
    env.pop("FCANET_CHECKPOINT", None)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "backend", "versions", *args], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    listed = run("list")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["current"]) for r in rows] == [(DEFAULT_NAME, True), ("v1", False)]
    assert json.loads(run("promote", "v1").stdout) == {"current": "v1"}
    assert registry.current().name == "v1"
    refused = run("promote", "nope")
    assert refused.returncode == 2 and "unknown model version 'nope'" in refused.stderr
