"""Model versions under ``MODEL_DIR``: immutable version folders and an atomically switched pointer.

Layout::

    MODEL_DIR/versions/<name>/model.pt       checkpoint (fcanet_core format, read-only)
    MODEL_DIR/versions/<name>/model.onnx     its ONNX Runtime artefact (fcanet_core.inference.runtime), when exported
    MODEL_DIR/versions/<name>/version.json   metadata: name, created, parent, data, metrics, recipe
    MODEL_DIR/current.json                    {"current": <name>, "history": [<older names>...]}

A version folder is assembled under a hidden temporary name and renamed into place, so it is
either complete or absent. The pointer is rewritten with a temporary file and ``os.replace``, under
a file lock, so readers always see a whole pointer. Until something is promoted the current
version is the bundled default model (or the ``FCANET_CHECKPOINT`` given).
"""
from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fcanet_core.atomic import atomic_write, fsync_dir

from ..common.locks import FileLock

logger = logging.getLogger(__name__)

#: Name of the bundled default model, the current version until something is promoted.
DEFAULT_NAME = "fcanet-lite0-default"
CHECKPOINT_FILE = "model.pt"
METADATA_FILE = "version.json"
POINTER_FILE = "current.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RegistryError(ValueError):
    """A registry operation that cannot be done (unknown version, nothing to roll back to, ...)."""


@dataclass(frozen=True)
class ModelVersion:
    """One model version: ``checkpoint`` is a path, or ``"default"`` for the bundled model."""

    name: str
    checkpoint: str
    metrics: dict = field(default_factory=dict)
    created: str = ""
    parent: str | None = None
    data: dict = field(default_factory=dict)


def utc_now() -> str:
    """The current UTC time as ISO 8601 text."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid version name (letters, digits, ``._-``), else raise."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise RegistryError(f"invalid version name {name!r}: use letters, digits, '.', '_' and '-' only")
    return name


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` atomically (synced temporary file in the same folder, then ``os.replace``)."""
    text = json.dumps(obj, indent=1, sort_keys=True)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def check_loadable(version: ModelVersion) -> None:
    """Load ``version``'s checkpoint once on the CPU; :class:`RegistryError` when it cannot be, so a
    broken file is never made current (the workers could not serve it)."""
    from fcanet_core import load_model

    if version.checkpoint == "default":
        return                                        # the bundled model
    try:
        load_model(version.checkpoint, "cpu")
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, it is not promoted
        raise RegistryError(f"model version {version.name!r} cannot be loaded from {version.checkpoint} "
                            f"({type(exc).__name__}: {exc}); it was not made current") from None
def export_artefact(model: Any, checkpoint: Path) -> Path | None:
    """Export ``model``'s ONNX artefact beside its saved ``checkpoint``; ``None`` (logged) when that fails."""
    from fcanet_core.inference.onnx_export import ExportError, export_onnx, file_fingerprint
    from fcanet_core.inference.runtime import default_artefact_path, onnxruntime_available

    if not onnxruntime_available():
        return None
    target = default_artefact_path(checkpoint)
    try:
        export_onnx(model, target, file_fingerprint(checkpoint))
    except ExportError as exc:
        logger.warning("version stored without an ONNX artefact (workers export it again when they load it): %s", exc)
        return None
    return target


class ModelRegistry:
    """Model versions of one ``MODEL_DIR``.

    Args:
        model_dir: the backend's model folder.
        default_checkpoint: checkpoint of the version used before any promotion
            (``Settings.fcanet_checkpoint``; ``"default"`` is the bundled model).
    """

    def __init__(self, model_dir: str | Path, default_checkpoint: str = "default") -> None:
        self.model_dir = Path(model_dir)
        self.versions_dir = self.model_dir / "versions"
        self.pointer_path = self.model_dir / POINTER_FILE
        self.default_checkpoint = default_checkpoint

    # ----------------------------------------------------------------- reading
    @property
    def default(self) -> ModelVersion:
        """The version in use before any promotion."""
        ckpt = self.default_checkpoint
        name = DEFAULT_NAME if ckpt == "default" else Path(ckpt).stem
        return ModelVersion(name=name, checkpoint=ckpt, metrics={}, created="", parent=None,
                            data={"source": "bundled" if ckpt == "default" else ckpt})

    def get(self, name: str) -> ModelVersion:
        """The version called ``name`` (the default version included); raises :class:`RegistryError`."""
        if name == self.default.name:
            return self.default
        folder = self.versions_dir / validate_name(name)
        try:
            meta = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RegistryError(f"unknown model version {name!r} (no folder {folder})") from None
        return ModelVersion(name=name, checkpoint=str(folder / CHECKPOINT_FILE),
                            metrics=meta.get("metrics", {}), created=meta.get("created", ""),
                            parent=meta.get("parent"), data=meta.get("data", {}))

    def metadata(self, name: str) -> dict:
        """The full metadata JSON of a stored version (recipe and decision included)."""
        self.get(name)
        if name == self.default.name:
            return asdict(self.default)
        return json.loads((self.versions_dir / name / METADATA_FILE).read_text(encoding="utf-8"))

    def _pointer(self) -> dict:
        try:
            pointer = json.loads(self.pointer_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"current": None, "history": []}
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{self.pointer_path} is not valid JSON: {exc}") from None
        return {"current": pointer.get("current"), "history": list(pointer.get("history", []))}

    def current(self) -> ModelVersion:
        """The version that serves predictions now."""
        name = self._pointer()["current"]
        return self.default if name is None else self.get(name)

    def earlier_versions(self) -> list[ModelVersion]:
        """The versions that were current before the current one, the latest first, then the default
        version; each once, the current one and unknown names left out (what to serve when the
        current checkpoint cannot be loaded)."""
        pointer = self._pointer()
        seen = {pointer["current"] or self.default.name}
        earlier = []
        for name in [*reversed(pointer["history"]), self.default.name]:
            if name in seen:
                continue
            seen.add(name)
            try:
                earlier.append(self.get(name))
            except RegistryError:
                continue
        return earlier

    def list(self) -> list[ModelVersion]:
        """Every version, the default first, then stored versions oldest first."""
        stored = []
        if self.versions_dir.is_dir():
            for folder in self.versions_dir.iterdir():
                if folder.name.startswith(".") or not (folder / METADATA_FILE).is_file():
                    continue
                stored.append(self.get(folder.name))
        return [self.default, *sorted(stored, key=lambda v: (v.created, v.name))]

    # ----------------------------------------------------------------- writing
    def new_name(self, arch: str, project: str | int | None = None) -> str:
        """A fresh version name like ``fcanet-lite0-p3-20261124T091658Z-1a2b``."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        scope = f"-p{project}" if project is not None else ""
        return validate_name(f"fcanet-{arch}{scope}-{stamp}-{secrets.token_hex(2)}")

    def add_candidate(self, model: Any, *, name: str, parent: str | None, data: dict, metrics: dict,
                      recipe: dict | None = None, extra: dict | None = None) -> ModelVersion:
        """Store ``model`` (an FCA-Net with ``.arch``) as a new immutable version; it is not promoted.

        The folder is written under a hidden temporary name, synced and renamed into place;
        an existing name is never overwritten. The ONNX artefact is exported into it too (checked
        against the model); an export that fails is logged and the version is stored without it.
        """
        from fcanet_core import save_checkpoint

        validate_name(name)
        if name == self.default.name:
            raise RegistryError(f"{name!r} is reserved for the default model")
        final = self.versions_dir / name
        if final.exists():
            raise RegistryError(f"model version {name!r} already exists; versions are immutable")
        meta = {"name": name, "created": utc_now(), "parent": parent, "arch": model.arch,
                "data": data, "metrics": metrics, "recipe": recipe or {}, **(extra or {})}
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.versions_dir))
        try:
            save_checkpoint(tmp / CHECKPOINT_FILE, model, arch=model.arch, meta=meta)
            export_artefact(model, tmp / CHECKPOINT_FILE)
            write_json_atomic(tmp / METADATA_FILE, meta)
            for item in tmp.iterdir():
                item.chmod(0o444)
            tmp.chmod(0o755)
            os.rename(tmp, final)
            fsync_dir(self.versions_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.info("stored model version %s (parent %s)", name, parent)
        return self.get(name)

    def promote(self, name: str, expected_current: str | None = None) -> ModelVersion:
        """Make ``name`` the current version; the previous one goes on the rollback history.

        With ``expected_current``, promote only if that is still the current version (a candidate
        measured against a version that was replaced meanwhile is not promoted over the new one).
        A version whose checkpoint cannot be loaded is refused (:func:`check_loadable`).
        """
        version = self.get(name)
        check_loadable(version)
        with FileLock(self.model_dir / ".registry.lock"):
            pointer = self._pointer()
            previous = pointer["current"] or self.default.name
            if expected_current is not None and previous != expected_current:
                raise RegistryError(f"current version is {previous!r}, not {expected_current!r}: {name!r} not promoted")
            if previous != name:
                pointer["history"].append(previous)
            pointer["current"] = name
            write_json_atomic(self.pointer_path, pointer)
        logger.info("promoted model version %s (was %s)", name, previous)
        return version

    def rollback(self) -> ModelVersion:
        """Return to the version that was current before the last promotion."""
        with FileLock(self.model_dir / ".registry.lock"):
            pointer = self._pointer()
            if not pointer["history"]:
                raise RegistryError("nothing to roll back to: no earlier version was current")
            name = pointer["history"].pop()
            version = self.get(name)
            check_loadable(version)
            pointer["current"] = name
            write_json_atomic(self.pointer_path, pointer)
        logger.info("rolled back to model version %s", name)
        return version
