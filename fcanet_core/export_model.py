"""Export a training state (``runs/…/last.pt``) as a project checkpoint for :func:`fcanet_core.load_model`.

CLI::

    python -m fcanet_core.export_model --from runs/lite0/last.pt --to models/fcanet_lite0.pt
        [--name VERSION] [--fp32] [--parent CHECKPOINT] [--where "2-core CPU"]

The checkpoint is written atomically in fp16 (unless ``--fp32``) with metadata: version name,
training data, recipe, steps, training time and the last evaluation from the run's
``metrics.jsonl`` (:func:`fcanet_core.modeling.checkpoint.save_checkpoint` adds the creation time).
With ``--parent`` (the checkpoint the run started from, ``default`` for the bundled model) the
metadata also carries the model's whole ``lineage``: one segment per run (steps, seconds of
training steps, data, where it ran), and the totals over all of them.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from .cli import run_action
from .train import METRICS_FILE, read_train_state
from .training.finetune import model_from_state

logger = logging.getLogger(__name__)


def _last_eval(run_dir: Path) -> dict[str, Any]:
    """The latest evaluation record of a run's learning curve, or an empty dict."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    evals = [r for r in records if "noc90" in r]
    return evals[-1] if evals else {}


def lineage_of(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The training segments behind a checkpoint's metadata (one synthesised from its totals if it has none)."""
    if "lineage" in meta:
        return list(meta["lineage"])
    if "steps" in meta:
        return [{"version": meta.get("version"), "steps": meta["steps"], "train_seconds": meta.get("train_seconds", 0),
                 "data": meta.get("data", []), "where": meta.get("where", "unknown")}]
    return []


def export_model(state_path: str | Path, out_path: str | Path, name: str | None = None,
                 half: bool = True, parent: str | Path | None = None, where: str = "unknown") -> Path:
    """Write the model of training state ``state_path`` as a project checkpoint at ``out_path``.

    ``parent`` names the checkpoint the run was initialised from; its lineage is carried over.
    ``where`` says what the run's steps ran on (e.g. ``"2-core CPU"``).
    """
    from .modeling.checkpoint import load_model, save_checkpoint

    state_path = Path(state_path)
    state = read_train_state(state_path)
    model = model_from_state(state)
    config = state["config"]
    last_eval = _last_eval(state_path.parent)
    meta = {
        "version": name or f"{state['arch']}-step{state['step']}",
        "data": [Path(d).name for d in config["train_dirs"]],
        "recipe": config,
        "steps": state["step"],
        "input_short_side": config["short_side"],
        "train_seconds": round(state["elapsed_s"]),
        "metrics": {f"{Path(config['eval_dir']).name}_{k}": v for k, v in last_eval.items() if k != "step"}
        if last_eval and config.get("eval_dir") else {},
        "metrics_step": last_eval.get("step"),
        "where": where,
    }
    lineage = lineage_of(load_model(str(parent), "cpu").meta) if parent is not None else []
    lineage.append({"version": meta["version"], "steps": state["step"], "train_seconds": meta["train_seconds"],
                    "data": meta["data"], "where": where})
    meta.update(lineage=lineage, steps_total=sum(s["steps"] for s in lineage),
                train_seconds_total=sum(s["train_seconds"] for s in lineage))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out_path, model, state["arch"], meta, half=half)
    logger.info("exported step %d of %s to %s", state["step"], state_path, out_path)
    return out_path


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m fcanet_core.export_model", description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="source", required=True, help="training state (runs/…/last.pt)")
    parser.add_argument("--to", required=True, help="checkpoint to write, e.g. models/fcanet_lite0.pt")
    parser.add_argument("--name", default=None, help="version name stored in the metadata")
    parser.add_argument("--fp32", action="store_true", help="keep fp32 weights (default fp16)")
    parser.add_argument("--parent", default=None, help="checkpoint the run started from ('default' = bundled)")
    parser.add_argument("--where", default="unknown", help="what the run's steps ran on, e.g. '2-core CPU'")
    args = parser.parse_args(argv)
    return run_action(lambda: export_model(args.source, args.to, args.name, half=not args.fp32, parent=args.parent,
                                           where=args.where), logger)


if __name__ == "__main__":
    sys.exit(main())
