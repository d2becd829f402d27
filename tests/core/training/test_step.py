"""One training step: robot rounds, layout and precision options, non-finite losses."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fcanet_core import build_model
from fcanet_core.data.datasets import load_samples
from fcanet_core.modeling.lite0 import DepthwiseConv2d
from fcanet_core.training.data import CropSpec, Example, make_example
from fcanet_core.training.step import StepOptions, native_precision, prepare_model, robot_rounds, train_step

FP32_NCHW = StepOptions(channels_last=False, bf16_train=False, bf16_robot=False, fp32_depthwise=False, prefetch=False)


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
    for options in (FP32_NCHW, StepOptions(channels_last=True, bf16_train=False, bf16_robot=False)):
        results.append(_one_update(examples, options))
    (loss_a, logits_a, update_a), (loss_b, logits_b, update_b) = results
    assert loss_b == pytest.approx(loss_a, rel=1e-4)
    assert torch.allclose(logits_a, logits_b, atol=1e-3)
    assert float(update_a.norm()) > 0
    assert float((update_a - update_b).norm() / update_a.norm()) < 1e-3


def test_default_bf16_step_stays_close_to_the_fp32_update(four_images: Path) -> None:
    examples = _examples(four_images)
    loss_a, _, update_a = _one_update(examples, FP32_NCHW)
    loss_b, logits_b, update_b = _one_update(examples, StepOptions())
    assert logits_b.dtype == torch.float32
    assert loss_b == pytest.approx(loss_a, rel=2e-2)
    assert not torch.equal(update_a, update_b)  # the step did run in bfloat16
    assert float((update_a - update_b).norm() / update_a.norm()) < 0.1


@pytest.mark.parametrize("fp32_depthwise", [True, False])
def test_depthwise_convolutions_stay_float32_under_autocast_when_asked(four_images: Path, fp32_depthwise: bool) -> None:
    options = StepOptions(fp32_depthwise=fp32_depthwise)
    model, _ = _model_and_optimizer(options)
    dtypes: dict[str, set[torch.dtype]] = {"depthwise": set(), "other": set()}

    def record(module: torch.nn.Module, _args: tuple, output: torch.Tensor) -> None:
        dtypes["depthwise" if isinstance(module, DepthwiseConv2d) else "other"].add(output.dtype)

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    train_step(model, torch.optim.SGD(model.parameters(), lr=0.0), torch.amp.GradScaler("cuda", enabled=False),
               _examples(four_images), torch.device("cpu"), options)
    assert dtypes["depthwise"] == ({torch.float32} if fp32_depthwise else {torch.bfloat16})
    assert dtypes["other"] == {torch.bfloat16}
    dtypes["depthwise"].clear()
    robot_rounds(model, _examples(four_images), 1, torch.device("cpu"), options)  # no gradient: bfloat16 is faster
    for hook in hooks:
        hook.remove()
    assert dtypes["depthwise"] == {torch.bfloat16}


def _one_update(examples: list[Example], options: StepOptions) -> tuple[float, torch.Tensor, torch.Tensor]:
    """(loss, logits, parameter update) of one step from the same initial weights, BN in eval mode
    (batch statistics of 2 crops would amplify rounding differences)."""
    model, optimizer = _model_and_optimizer(options)
    model.eval()
    start = [p.detach().clone() for p in model.parameters()]
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    loss, logits = train_step(model, optimizer, scaler, examples, torch.device("cpu"), options)
    update = torch.cat([(p.detach() - s).flatten() for p, s in zip(model.parameters(), start)])
    return loss, logits.detach(), update


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


@pytest.mark.parametrize("native", [True, False])
def test_training_uses_cpu_bfloat16_only_where_the_cpu_has_it(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    options = native_precision(StepOptions())
    assert (options.bf16_train, options.bf16_robot) == (native, native)
    assert options.channels_last and options.prefetch and options.fp32_depthwise
