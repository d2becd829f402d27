"""One training step: robot rounds, layout and precision options, non-finite losses."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fcanet_core import build_model
from fcanet_core.datasets import load_samples
from fcanet_core.train_data import CropSpec, Example, make_example
from fcanet_core.train_step import StepOptions, prepare_model, robot_rounds, train_step

FP32_NCHW = StepOptions(channels_last=False, bf16_train=False, bf16_robot=False)


def _examples(folder: Path, n: int = 2, crop: int = 64) -> list[Example]:
    rng = np.random.default_rng(0)
    samples = load_samples(folder)
    return [make_example(samples, i, CropSpec(crop=crop, short_side=crop + 8), rng) for i in range(n)]


def _model_and_optimizer(options: StepOptions) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = prepare_model(build_model("lite0", pretrained=False).train(), options)
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


@pytest.mark.parametrize("options", [FP32_NCHW, StepOptions()], ids=["fp32", "default"])
def test_robot_rounds_add_one_robot_click_per_round(four_images: Path, options: StepOptions) -> None:
    examples = _examples(four_images)
    model, _ = _model_and_optimizer(options)
    grown = robot_rounds(model, examples, 2, torch.device("cpu"), options)
    assert model.training
    for before, after in zip(examples, grown):
        assert after.clicks[: len(before.clicks)] == before.clicks and len(after.clicks) == len(before.clicks) + 2
        assert after.clicks[-1] not in after.clicks[:-1]
        assert after.clicks[-1].positive == (after.gt[after.clicks[-1].y, after.clicks[-1].x] == 1)


def test_channels_last_step_computes_the_same_update(four_images: Path) -> None:
    examples = _examples(four_images)
    results = []
    for options in (FP32_NCHW, StepOptions(channels_last=True, bf16_robot=False)):
        model, optimizer = _model_and_optimizer(options)
        model.eval()  # batch statistics of 2 crops would amplify rounding differences between layouts
        start = [p.detach().clone() for p in model.parameters()]
        scaler = torch.amp.GradScaler("cuda", enabled=False)
        loss, logits = train_step(model, optimizer, scaler, examples, torch.device("cpu"), options)
        update = torch.cat([(p.detach() - s).flatten() for p, s in zip(model.parameters(), start)])
        results.append((loss, logits.detach(), update))
    (loss_a, logits_a, update_a), (loss_b, logits_b, update_b) = results
    assert loss_b == pytest.approx(loss_a, rel=1e-4)
    assert torch.allclose(logits_a, logits_b, atol=1e-3)
    assert float(update_a.norm()) > 0
    assert float((update_a - update_b).norm() / update_a.norm()) < 1e-3


def test_bf16_training_step_lowers_the_loss_on_a_repeated_batch(four_images: Path) -> None:
    examples = _examples(four_images)
    options = StepOptions(channels_last=True, bf16_train=True)
    model, optimizer = _model_and_optimizer(options)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    losses = [train_step(model, optimizer, scaler, examples, torch.device("cpu"), options)[0] for _ in range(6)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_non_finite_loss_raises_and_leaves_the_weights_unchanged(four_images: Path) -> None:
    examples = _examples(four_images)
    model, optimizer = _model_and_optimizer(FP32_NCHW)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(FloatingPointError, match="not finite|nan"):
        train_step(model, optimizer, torch.amp.GradScaler("cuda", enabled=False), examples, torch.device("cpu"),
                   FP32_NCHW)
    assert all(torch.equal(a, b) or (a.isnan().all() and b.isnan().all()) for a, b in zip(before, model.parameters()))
