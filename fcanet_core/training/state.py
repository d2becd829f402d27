"""The training state file ``last.pt`` of a run folder: what it holds, reading it, starting from weights."""
from __future__ import annotations

import logging
import pickle
import types
from pathlib import Path
from typing import Any

import torch

from ..modeling import FCANet
from ..modeling.checkpoint import load_model, resolve_checkpoint

logger = logging.getLogger(__name__)

STATE_FORMAT = "fcanet_core.train_state"
STATE_FILE = "last.pt"
METRICS_FILE = "metrics.jsonl"

#: Where the classes pickled in states written before the ``training`` package live now (the ITIS
#: memory of ``ranks`` holds ``View`` records), so those states still load and resume.
RENAMED_MODULES = {
    "fcanet_core.train_data": "fcanet_core.training.data",
    "fcanet_core.train_batches": "fcanet_core.training.batches",
    "fcanet_core.sampling": "fcanet_core.training.sampling",
    "fcanet_core.datasets": "fcanet_core.data.datasets",
}


class _StateUnpickler(pickle.Unpickler):
    """Unpickles a training state, finding classes of renamed modules at their new place."""

    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(RENAMED_MODULES.get(module, module), name)


_STATE_PICKLE = types.ModuleType("fcanet_core_state_pickle")
_STATE_PICKLE.Unpickler = _StateUnpickler  # type: ignore[attr-defined]
_STATE_PICKLE.load = pickle.load  # type: ignore[attr-defined]


def read_train_state(path: str | Path) -> dict[str, Any]:
    """Load a ``last.pt`` training state (on CPU); ``ValueError`` if the file is something else.

    ``state["ranks"]`` holds each process's data state: its generators (``numpy``, ``torch``), sample
    ``order`` and ITIS memory (``itis``); states written before data parallelism are read as one rank.
    """
    state = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_STATE_PICKLE)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a training state written by fcanet_core.train")
    if "ranks" not in state:
        rng = state.pop("rng")
        state["ranks"] = [{**rng, "order": state.pop("order"), "itis": state.pop("itis")}]
    return state


def init_weights(model: FCANet, path: str | Path, arch: str) -> None:
    """Copy weights from a training state or any checkpoint :func:`fcanet_core.load_model` reads."""
    path = resolve_checkpoint(path)
    try:
        state = read_train_state(path)
        source_arch, weights = state["arch"], state["model"]
    except ValueError:
        source = load_model(str(path), "cpu")
        source_arch, weights = source.arch, source.state_dict()
    if source_arch != arch:
        raise ValueError(f"--init checkpoint {path} is a {source_arch!r} model but the config trains {arch!r}")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    logger.info("initialised from %s", path)
