"""Where the bundled model is looked for: the source checkout first, then the installation's data path."""
from __future__ import annotations

import sysconfig
from pathlib import Path

from fcanet_core.modeling import bundled
from fcanet_core.modeling.bundled import BUNDLED_NAME, INSTALLED_SUBDIR, bundled_candidates, bundled_model_path
from tests.conftest import REPO_ROOT


def test_the_source_checkout_comes_first_then_the_install_schemes() -> None:
    candidates = bundled_candidates()
    assert candidates[0] == REPO_ROOT / "models" / BUNDLED_NAME
    data = Path(sysconfig.get_path("data", sysconfig.get_default_scheme()))
    assert candidates[1] == data / INSTALLED_SUBDIR / BUNDLED_NAME
    assert len(candidates) == len(set(candidates))


def test_the_first_existing_candidate_wins_else_the_checkout_path(tmp_path: Path, monkeypatch) -> None:
    installed = tmp_path / "share" / BUNDLED_NAME
    missing = tmp_path / "checkout" / BUNDLED_NAME
    monkeypatch.setattr(bundled, "bundled_candidates", lambda: [missing, installed])
    assert bundled_model_path() == missing  # nothing exists: the checkout path, for a clear error
    installed.parent.mkdir(parents=True)
    installed.write_bytes(b"x")
    assert bundled_model_path() == installed
