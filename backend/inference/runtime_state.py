"""Which inference runtime serves, per process, for ``/health``.

Each worker writes its engine's :meth:`~backend.inference.InferenceEngine.runtime_state` under
``fcanet:runtime:<worker name>`` with its heartbeat, the key living as long as the worker's own
liveness key, so a dead worker drops out. The web process reads them all; a torch fallback (a
broken or missing ONNX artefact) becomes a ``/health`` warning.
"""
from __future__ import annotations

import json

from redis import Redis

KEY_PREFIX = "fcanet:runtime:"


def publish_runtime(connection: Redis, worker_name: str, state: dict, ttl: int) -> None:
    """Store ``state`` for ``worker_name`` for ``ttl`` seconds."""
    connection.set(KEY_PREFIX + worker_name, json.dumps(state), ex=ttl)


def forget_runtime(connection: Redis, worker_name: str) -> None:
    """Remove a stopping worker's entry."""
    connection.delete(KEY_PREFIX + worker_name)


def worker_runtimes(connection: Redis) -> dict[str, dict]:
    """``{worker name: runtime state}`` of the workers alive now."""
    keys = sorted(connection.scan_iter(match=KEY_PREFIX + "*", count=100))
    values = connection.mget(keys) if keys else []
    return {key.decode()[len(KEY_PREFIX):]: json.loads(value) for key, value in zip(keys, values) if value}


def runtime_warnings(runtimes: dict[str, dict]) -> list[str]:
    """One warning per process that serves another version than the current one (its checkpoint
    cannot be loaded), and one per process that fell back to torch from the runtime it was asked for."""
    stale = [f"{who} serves {state.get('model_version')} instead of the current version "
             f"{state['not_serving']['version']}, whose checkpoint cannot be loaded ({state['not_serving']['reason']}): "
             "promote or roll back to a loadable version" for who, state in runtimes.items() if state.get("not_serving")]
    return stale + [f"{who} serves {state.get('model_version')} with torch (FCANET_RUNTIME={state.get('requested')}): "
                    f"{state['fallback_reason']}" for who, state in runtimes.items() if state.get("fallback_reason")]


def served_version(current: str | None, runtimes: dict[str, dict]) -> dict[str, str]:
    """``/health``'s version fields when no process can load the current version.

    Every process reporting that it cannot load ``current`` and serving the same earlier version
    makes that version ``model_version``, with ``current_version`` naming the registry's choice;
    otherwise nothing changes (a process serves ``current`` from its next click on).
    """
    states = list(runtimes.values())
    if not states or not all((s.get("not_serving") or {}).get("version") == current for s in states):
        return {}
    served = {s.get("model_version") for s in states}
    if len(served) != 1:
        return {}
    return {"model_version": served.pop(), "current_version": current}
