"""Fixtures shared by every test package: where the reference data lives."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_path() -> Path:
    """The shared data folder: ``$FCANET_SHARED`` or ``../shared`` beside the repository."""
    return Path(os.environ.get("FCANET_SHARED", REPO_ROOT.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """Root of the shared reference material and data; tests that need it skip loudly if absent."""
    path = shared_path()
    if not path.is_dir():
        pytest.fail(f"shared data folder not found at {path}; set FCANET_SHARED")
    return path


@pytest.fixture(scope="session")
def reference_dir(shared_dir: Path) -> Path:
    """``shared/reference``: specs, key lists and golden outputs."""
    return shared_dir / "reference"
