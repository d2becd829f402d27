"""Acceptance: learning a new domain from corrections, as a user does it, with the default recipe.

``bash scripts/serve.sh`` (the README's serve command, default fine-tuning settings) serves a
real Label Studio project of 20 Weizmann horse images, a domain the bundled model never saw. The
20 corrected masks (the ground truth, with the smart keypoint an annotator places first) are saved
through Label Studio's API, which delivers them by webhook; the 20th triggers a fine-tuning and
Start Training follows. The gate must promote the candidate within 10 minutes, and the promoted
model must need at least 10 % fewer clicks (NoC@90, robot user, as served) than the bundled one
on 5 other horse images.

Not part of the default run (marker ``acceptance``): with today's default recipe the candidate gains
on the horses but loses on the guard set and is rejected, so this test fails until the recipe stops
forgetting. Run it with ``bash scripts/test.sh -m acceptance tests/e2e/test_learning_horses.py``.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from backend.config import Settings
from backend.learning import evaluate_model, load_state
from backend.storage.registry import ModelRegistry
from fcanet_core import load_model
from fcanet_core.data.datasets import Sample, load_samples
from tests.e2e.conftest import Served
from tests.e2e.test_learning import annotation_result

ANNOTATIONS, OTHERS = 20, 5
PROMOTION_WITHIN_S = 600.0
FEWER_CLICKS = 0.10
#: Label Studio's and serve.sh's start, the promotion, then two models on the other horses.
pytestmark = [pytest.mark.acceptance, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(PROMOTION_WITHIN_S + 900)]


@pytest.fixture
def served(serve) -> Iterator[Served]:
    """``bash scripts/serve.sh`` with the default fine-tuning settings."""
    with serve({}) as running:
        yield running


@pytest.fixture(scope="module")
def horses(shared_dir: Path) -> tuple[list[Sample], list[Sample]]:
    """(annotated, other) horses: disjoint draws of a seeded shuffle of the shared horse set."""
    samples = load_samples(shared_dir / "data" / "train" / "horses")
    order = np.random.default_rng(0).permutation(len(samples))
    return ([samples[i] for i in order[:ANNOTATIONS]],
            [samples[i] for i in order[ANNOTATIONS:ANNOTATIONS + OTHERS]])


def test_twenty_corrected_horses_promote_a_model_that_saves_clicks_on_other_horses(
        served: Served, ls_api, horses: tuple[list[Sample], list[Sample]]) -> None:
    annotated, others = horses
    project = ls_api.create_project(f"horses-{uuid.uuid4().hex[:8]}")
    tasks = ls_api.upload_images(project, [s.image_path for s in annotated])
    ml_id = ls_api.connect_backend(project, served.url)
    registry = ModelRegistry(served.model_dir, "default")
    bundled = registry.current()
    started = time.monotonic()
    for sample in annotated:
        ls_api.create_annotation(tasks[sample.image_path.stem], annotation_result(sample))
    ls_api.request("POST", f"/api/ml/{ml_id}/train", json={})

    settings = Settings.from_env({"MODEL_DIR": str(served.model_dir)})
    while registry.current().name == bundled.name:
        last_run = load_state(settings, str(project)).get("last_run") or {}
        assert last_run.get("status") != "rejected", f"candidate rejected: {last_run.get('gate', {}).get('why')}"
        assert time.monotonic() - started < PROMOTION_WITHIN_S, (
            f"no promotion within {PROMOTION_WITHIN_S:.0f} s:\n{served.process.tail()}")
        time.sleep(2)
    promoted = registry.current()
    assert promoted.parent == bundled.name and promoted.data["project"] == str(project)
    assert promoted.data["train_examples"] + promoted.data["holdout_examples"] == ANNOTATIONS

    noc90 = {}
    for label, version in (("bundled", bundled), ("promoted", promoted)):
        model = load_model(version.checkpoint, "cpu")
        noc90[label] = evaluate_model(model, others, settings, "cpu", max_clicks=20)["noc90"]
    assert noc90["promoted"] <= (1.0 - FEWER_CLICKS) * noc90["bundled"], (
        f"NoC@90 on {OTHERS} other horses: {noc90}; gate: {promoted.metrics['gate']['why']}")
