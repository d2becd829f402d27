"""A project's training state: its folder, the examples it was trained on, its Redis keys."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..config import Settings
from ..labelstudio.annotations import project_key
from ..storage.examples import Example, ExampleStore
from ..storage.registry import write_json_atomic

KEY_PREFIX = "fcanet:learning"
#: Seconds a finished or failed learning job stays in Redis for inspection.
RESULT_TTL = 7 * 24 * 3600


def training_dir(settings: Settings, project: str) -> Path:
    """Where a project's training state and run folders live."""
    return Path(settings.model_dir) / "training" / project_key(project)


def example_store(settings: Settings) -> ExampleStore:
    """The example store of ``MODEL_DIR``."""
    return ExampleStore(Path(settings.model_dir) / "examples")


def load_state(settings: Settings, project: str) -> dict:
    """The project's training state: ``trained`` (example key → revision of the last completed
    fine-tuning) and ``last_run`` (its summary)."""
    try:
        return json.loads((training_dir(settings, project) / "state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"trained": {}, "last_run": None}


def save_state(settings: Settings, project: str, trained: Sequence[Example], last_run: dict) -> None:
    """Record a completed fine-tuning: the examples it trained on and its summary."""
    write_json_atomic(training_dir(settings, project) / "state.json",
                      {"trained": {e.key: e.revision for e in trained}, "last_run": last_run})


def last_decision(settings: Settings, project: str) -> dict | None:
    """The project's last completed fine-tuning in brief: status, candidate, parent, the gate's
    verdict and why (``None`` before the first)."""
    run = load_state(settings, project).get("last_run")
    if not run:
        return None
    gate = run.get("gate") or {}
    return {"status": run.get("status"), "version": run.get("version"), "parent": run.get("parent"),
            "finished": run.get("finished"), "verdict": gate.get("verdict"), "why": gate.get("why", run.get("why"))}


def new_examples(examples: Sequence[Example], state: dict) -> list[Example]:
    """Examples added or changed since the last completed fine-tuning."""
    trained = state.get("trained") or {}
    return [e for e in examples if trained.get(e.key) != e.revision]


def pending_key(project: str) -> str:
    """Redis key holding the id of the project's fine-tuning job while it waits in the queue."""
    return f"{KEY_PREFIX}:{project}:pending"


def lock_key(project: str) -> str:
    """Redis key of the project's training lock."""
    return f"{KEY_PREFIX}:{project}:lock"
