"""Where the bundled default model (``models/fcanet_lite0.pt``) lies.

In a source checkout it is ``<repository>/models/fcanet_lite0.pt``. An installed package
(``pip install .``) ships it as a data file under ``<prefix>/share/fcanet/models/`` (see
``pyproject.toml``), where ``<prefix>`` is the environment's (or the user scheme's) data path.
"""
from __future__ import annotations

import sysconfig
from pathlib import Path

#: File name of the bundled model, and its folder relative to an installation's data path.
BUNDLED_NAME = "fcanet_lite0.pt"
INSTALLED_SUBDIR = Path("share") / "fcanet" / "models"


def bundled_candidates() -> list[Path]:
    """Places the bundled model is looked for, first match wins: source checkout, then installs."""
    source = Path(__file__).resolve().parents[2] / "models" / BUNDLED_NAME
    schemes = (sysconfig.get_default_scheme(), sysconfig.get_preferred_scheme("user"))
    installed = [Path(sysconfig.get_path("data", scheme)) / INSTALLED_SUBDIR / BUNDLED_NAME for scheme in schemes]
    return [source, *dict.fromkeys(installed)]


def bundled_model_path() -> Path:
    """The bundled model's file: the first candidate that exists, else the source-checkout path."""
    candidates = bundled_candidates()
    return next((path for path in candidates if path.is_file()), candidates[0])
