"""The fine-tuning job: examples → candidate version → promotion if the evidence allows it.

:func:`fine_tune` holds the project's training lock, splits the examples deterministically into
training and held-out sets, measures the current version on the held-out examples (and the
bundled model on its guard set), fine-tunes from the current version
(:func:`fcanet_core.training.finetune.fine_tune`: click loss, simulated and iterative clicks),
measures the candidate on both, stores it as an immutable version with the gate's evidence and
promotes it when the rule of :mod:`backend.learning.evidence` says so and the current version did
not change meanwhile. Nothing outside
the run folder is written before the candidate is complete, so a crash leaves the current model
untouched. A run that finds no example added or changed since the project's last completed run
(whatever its reason: a Start Training right after an automatic trigger) is skipped instead of
training again.
"""
from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from rq import get_current_job

from fcanet_core import load_model
from fcanet_core.data.datasets import load_samples
from fcanet_core.inference.predictor import model_input_short_side
from fcanet_core.train import TrainConfig
from fcanet_core.training.finetune import fine_tune as fine_tune_model

from ..common.locks import delete_if_value
from ..config import Settings, get_settings
from ..inference.engine import resolve_device
from ..inference.queueing import redis_connection
from ..labelstudio.annotations import project_key
from ..storage.examples import Example
from ..storage.registry import ModelRegistry, RegistryError, utc_now
from .gate import evaluate_model, gate_evidence, guard_dir, snapshot, split_examples, without_scores
from .lock import training_lock
from .state import example_store, load_state, new_examples, pending_key, save_state, training_dir
from .status import Reason, RunStatus

logger = logging.getLogger(__name__)


def fine_tune(project: str, reason: str, settings: Settings | None = None) -> dict:
    """Job: fine-tune ``project``'s examples into a candidate and promote it if it is not worse.

    Returns:
        A summary: ``status`` (``promoted``, ``rejected`` or ``skipped``), ``version``, ``parent``,
        ``metrics`` (``before``/``after`` on the held-out examples), ``gate`` (the evidence: both
        models' numbers on the project and the guard set, the verdict and why), example counts,
        seconds.
    """
    settings = settings or get_settings()
    project = project_key(project)
    job = get_current_job()
    if job is not None:
        delete_if_value(redis_connection(settings), pending_key(project), job.id)  # no longer waiting
    with training_lock(settings, project, job) as lost:
        summary = _FineTune(settings, project).run(Reason(reason), lost)
    logger.info("fine-tuning finished", extra={k: v for k, v in summary.items() if k != "metrics"})
    return summary


class _FineTune:
    """One fine-tuning run of a project (called with the project's training lock held)."""

    def __init__(self, settings: Settings, project: str) -> None:
        self.settings, self.cfg, self.project = settings, settings.learning, project
        self.dir = training_dir(settings, project)
        self.registry = ModelRegistry(settings.model_dir, settings.fcanet_checkpoint)

    def _skip(self, why: str, examples: int, new: int) -> dict:
        logger.info("fine-tuning skipped", extra={"project": self.project, "why": why})
        return {"project": self.project, "status": RunStatus.SKIPPED, "why": why, "examples": examples,
                "new_examples": new}

    def run(self, reason: Reason, lost: threading.Event) -> dict:
        examples = example_store(self.settings).examples(self.project)
        new = len(new_examples(examples, load_state(self.settings, self.project)))
        if reason == Reason.EXAMPLES and new < self.settings.train_every_n_examples:
            return self._skip(f"{new} new example(s), fewer than TRAIN_EVERY_N_EXAMPLES", len(examples), new)
        if examples and new == 0:
            return self._skip("no new examples since the last fine-tuning", len(examples), new)
        if len(examples) < self.cfg.min_examples:
            return self._skip(f"{len(examples)} example(s), fewer than MIN_TRAIN_EXAMPLES={self.cfg.min_examples}",
                              len(examples), new)
        shutil.rmtree(self.dir / "runs", ignore_errors=True)  # left by a killed run (we hold the lock)
        run_dir = self.dir / "runs" / f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
        try:
            return self._train(reason, examples, run_dir, lost)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)

    def _config(self, arch: str, run_dir: Path, scale: int, parent: str) -> TrainConfig:
        """The fine-tuning recipe of ``Settings.learning`` at the parent's input scale."""
        cfg = self.cfg
        return TrainConfig.from_mapping(dict(
            arch=arch, train_dirs=(str(run_dir / "train"),), pretrained=False, short_side=scale, crop=cfg.crop,
            batch_size=cfg.batch_size, max_steps=cfg.steps, time_budget_s=cfg.time_budget_s, lr=cfg.lr, itis_start=0,
            robot_rounds=cfg.robot_rounds, checkpoint_every=cfg.steps, log_every=max(1, cfg.steps // 10),
            seed=cfg.seed, extra={"project": self.project, "parent": parent}))

    def _train(self, reason: Reason, examples: list[Example], run_dir: Path, lost: threading.Event) -> dict:
        started = time.monotonic()
        device = resolve_device(self.settings.device)
        train_set, holdout = split_examples(examples, self.cfg.holdout_fraction)
        train_set = snapshot(train_set, run_dir / "train")
        holdout = snapshot(holdout, run_dir / "holdout")
        if not train_set or not holdout:
            return self._skip("examples changed while snapshotting; nothing left on one side", len(examples), 0)
        parent = self.registry.current()
        rule = self.cfg.gate_rule
        eval_samples = load_samples(run_dir / "holdout")
        guard = load_samples(guard_dir(self.cfg))
        bundled = self.registry.default
        parent_model = load_model(parent.checkpoint, device)
        before = evaluate_model(parent_model, eval_samples, self.settings, device, self.cfg.eval_max_clicks, rule.clicks)
        guard_model = parent_model if parent.name == bundled.name else load_model(bundled.checkpoint, device)
        guard_before = evaluate_model(guard_model, guard, self.settings, device, rule.clicks, rule.clicks)
        scale = model_input_short_side(parent_model)  # the candidate sees images at its parent's scale
        config = self._config(parent_model.arch, run_dir, scale, parent.name)
        del parent_model, guard_model
        tuned = fine_tune_model(config, run_dir / "run", parent.checkpoint, device)
        model = tuned.model
        model.meta = {"input_short_side": scale}
        after = evaluate_model(model, eval_samples, self.settings, device, self.cfg.eval_max_clicks, rule.clicks)
        guard_after = evaluate_model(model, guard, self.settings, device, rule.clicks, rule.clicks)
        gate = gate_evidence(rule, (before, after), (guard_before, guard_after),
                             {"dir": str(guard_dir(self.cfg)), "baseline": bundled.name})
        before, after = without_scores(before), without_scores(after)
        name = self.registry.new_name(config.arch, self.project)
        recipe = {k: v for k, v in config.flat().items() if k not in ("train_dirs", "eval_dir", "extra")}
        self.registry.add_candidate(
            model, name=name, parent=parent.name,
            data={"project": self.project, "train_examples": len(train_set), "holdout_examples": len(holdout),
                  "train_keys": [e.key for e in train_set], "holdout_keys": [e.key for e in holdout]},
            metrics={**after, "dataset": f"project {self.project} held-out examples",
                     "baseline": {"version": parent.name, **before}, "gate": gate},
            recipe={**recipe, "reason": reason.value, "device": device},
            extra={"accepted": gate["promote"], "input_short_side": scale, "steps": tuned.steps,
                   "train_seconds": round(tuned.train_seconds, 1)})
        if not gate["promote"]:
            logger.warning("candidate rejected: %s", gate["why"], extra={"project": self.project, "model_version": name})
        status = self._promote(name, parent.name, lost) if gate["promote"] else RunStatus.REJECTED
        summary = {"project": self.project, "status": status, "reason": reason, "version": name,
                   "parent": parent.name, "metrics": {"before": before, "after": after}, "gate": gate,
                   "train_examples": len(train_set), "holdout_examples": len(holdout),
                   "seconds": round(time.monotonic() - started, 1), "finished": utc_now()}
        kept = {e.key for e in (*train_set, *holdout)}
        save_state(self.settings, self.project, [e for e in examples if e.key in kept], summary)
        return summary

    def _promote(self, name: str, parent: str, lost: threading.Event) -> RunStatus:
        """Promote an accepted candidate unless the lock was lost or the current version changed."""
        if lost.is_set():
            logger.error("training lock lost during fine-tuning: candidate stored, not promoted",
                         extra={"project": self.project, "model_version": name})
            return RunStatus.REJECTED
        try:
            self.registry.promote(name, expected_current=parent)
        except RegistryError as exc:
            logger.warning("candidate not promoted: %s", exc, extra={"model_version": name})
            return RunStatus.REJECTED
        return RunStatus.PROMOTED
