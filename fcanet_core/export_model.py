"""Export a training state (``runs/…/last.pt``) as a project checkpoint for :func:`fcanet_core.load_model`.

CLI::

    python -m fcanet_core.export_model --from runs/lite0/last.pt --to models/fcanet_lite0.pt
        [--name VERSION] [--fp32]

The checkpoint is written atomically in fp16 (unless ``--fp32``) with metadata: version name,
training data, recipe, steps, training time and the last evaluation from the run's
``metrics.jsonl`` (:func:`fcanet_core.checkpoint.save_checkpoint` adds the creation time).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from .model import build_model
from .train import METRICS_FILE, read_train_state

logger = logging.getLogger(__name__)


def _last_eval(run_dir: Path) -> dict[str, Any]:
    """The latest evaluation record of a run's learning curve, or an empty dict."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    evals = [r for r in records if "noc90" in r]
    return evals[-1] if evals else {}


def export_model(state_path: str | Path, out_path: str | Path, name: str | None = None,
                 half: bool = True) -> Path:
    """Write the model of training state ``state_path`` as a project checkpoint at ``out_path``."""
    from .checkpoint import save_checkpoint

    state_path = Path(state_path)
    state = read_train_state(state_path)
    model = build_model(state["arch"])
    model.load_state_dict(state["model"])
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
    }
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        path = export_model(args.source, args.to, args.name, half=not args.fp32)
    except (ValueError, OSError) as exc:
        logger.error("%s", exc)
        return 2
    sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
