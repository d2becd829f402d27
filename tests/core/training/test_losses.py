"""Click loss: hand-computed values for both heads, ignore pixels, bad shapes."""
from __future__ import annotations

import math

import pytest
import torch

from fcanet_core.training.losses import click_loss, click_weight


def t(values: list[float]) -> torch.Tensor:
    """A 1×1×1×N tensor."""
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)


def test_weight_is_two_on_the_click_and_falls_linearly_to_point_eight_at_tau() -> None:
    got = click_weight(torch.tensor([0.0, 25.0, 50.0, 100.0, 170.0, 255.0]))
    assert torch.allclose(got, torch.tensor([2.0, 1.7, 1.4, 0.8, 0.8, 0.8]))


def test_main_and_first_head_weights_by_hand() -> None:
    # Pixel 0 is object, pixel 1 background; all logits 0 so every BCE term is ln 2.
    target = t([1, 0]).to(torch.uint8)
    pos, neg, first = t([0.0, 255.0]), t([255.0, 50.0]), t([25.0, 0.0])
    loss = click_loss(t([0, 0]), t([0, 0]), target, pos, neg, first)
    # main: object w(0) = 2.0, background w(50) = 1.4; first head: object w(25) = 1.7, background 0.8.
    expected = math.log(2) * (2.0 + 1.4) / 2 + math.log(2) * (1.7 + 0.8) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_non_zero_logits_and_no_negative_clicks() -> None:
    target = t([1, 0, 0]).to(torch.uint8)
    pos, neg, first = t([100.0, 0.0, 0.0]), t([255.0, 255.0, 255.0]), t([0.0, 0.0, 0.0])
    main_logits, first_logits = t([2.0, -1.0, 0.0]), t([-2.0, 3.0, 0.0])
    loss = click_loss(main_logits, first_logits, target, pos, neg, first)
    sp = lambda x: math.log1p(math.exp(x))  # BCE(logit z, target 1) = softplus(−z); target 0: softplus(z)
    main = (0.8 * sp(-2.0) + 0.8 * sp(-1.0) + 0.8 * sp(0.0)) / 3  # no negatives → 0.8 on background
    first_head = (2.0 * sp(2.0) + 0.8 * sp(3.0) + 0.8 * sp(0.0)) / 3  # first click on pixel 0
    assert loss.item() == pytest.approx(main + first_head, rel=1e-6)


def test_ignore_pixels_add_nothing_but_count_in_the_mean() -> None:
    target = t([1, 255]).to(torch.uint8)
    pos, neg, first = t([0.0, 0.0]), t([255.0, 255.0]), t([0.0, 0.0])
    loss = click_loss(t([0.0, 9.0]), t([0.0, -9.0]), target, pos, neg, first)
    assert loss.item() == pytest.approx(math.log(2) * 2.0 / 2 * 2, rel=1e-6)


def test_gradient_flows_to_both_heads() -> None:
    main, first = t([0.5, -0.5]).requires_grad_(), t([0.1, 0.2]).requires_grad_()
    loss = click_loss(main, first, t([1, 0]).to(torch.uint8), t([0, 9]), t([9, 0]), t([0, 9]))
    loss.backward()
    assert main.grad.abs().sum() > 0 and first.grad.abs().sum() > 0


def test_shape_mismatch_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        click_loss(t([0, 0]), t([0, 0, 0]), t([1, 0]), t([0, 0]), t([0, 0]), t([0, 0]))
