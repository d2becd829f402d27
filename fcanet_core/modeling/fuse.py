"""Inference-only rewrite of an FCA-Net: BatchNorm folded into the preceding convolution.

The pairs to fold are found by running the network once on a small probe input and
watching which ``BatchNorm2d`` directly consumes the output of the ``Conv2d`` called just
before it, so any backbone is handled without naming conventions. The rewritten network is
checked against the original on the same probe before it is returned.
"""
from __future__ import annotations

import copy
import logging

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

logger = logging.getLogger(__name__)

#: Side of the square probe input; large enough for every stride-32 backbone.
PROBE_SIZE = 64
#: Largest absolute difference of the probe logits the rewrite may introduce, relative to their scale.
PROBE_TOLERANCE = 1e-4


def _probe_inputs(device: torch.device) -> tuple[torch.Tensor, ...]:
    """A fixed image and click distance maps (a positive, a negative and the first click)."""
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, PROBE_SIZE, PROBE_SIZE, generator=gen)
    ys, xs = torch.meshgrid(torch.arange(PROBE_SIZE), torch.arange(PROBE_SIZE), indexing="ij")

    def dist(x: int, y: int) -> torch.Tensor:
        return torch.hypot((xs - x).float(), (ys - y).float()).clamp(max=255.0)[None, None]

    pos = dist(20, 30)
    return tuple(t.to(device) for t in (image, pos, dist(50, 10), pos))


def _conv_bn_pairs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[list[tuple[str, str]], torch.Tensor]:
    """Names of (conv, bn) pairs where the BN is the next leaf call and eats the conv's output."""
    names = {m: n for n, m in model.named_modules()}
    calls: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
    counts: dict[nn.Module, int] = {}

    def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        calls.append((module, args[0] if args else None, output))
        counts[module] = counts.get(module, 0) + 1

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(record) for m in leaves]
    try:
        with torch.inference_mode():
            reference = model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    pairs = [
        (names[conv], names[bn])
        for (conv, _, conv_out), (bn, bn_in, _) in zip(calls, calls[1:])
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        and bn_in is conv_out and counts[conv] == 1 and counts[bn] == 1
    ]
    return pairs, reference


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy of ``model`` with every Conv2d → BatchNorm2d pair folded into one conv.

    The input model is left untouched. The copy computes the same logits (checked on a probe
    input to ``PROBE_TOLERANCE``) with fewer passes over memory; its ``state_dict`` no longer
    has BN keys, so it is for inference only (it carries ``fused_for_inference = True``).

    Args:
        model: an FCA-Net style module, ``model(image, pos_dist, neg_dist, first_dist) -> logits``.

    Raises:
        RuntimeError: if the folded network disagrees with the original on the probe.
    """
    fused = copy.deepcopy(model).eval()
    device = next(fused.parameters()).device
    inputs = _probe_inputs(device)
    pairs, reference = _conv_bn_pairs(fused, inputs)
    modules = dict(fused.named_modules())
    for conv_name, bn_name in pairs:
        _replace(fused, conv_name, fuse_conv_bn_eval(modules[conv_name], modules[bn_name]))
        _replace(fused, bn_name, nn.Identity())
    with torch.inference_mode():
        error = (fused(*inputs) - reference).abs().max().item()
    scale = max(1.0, reference.abs().max().item())
    if not error <= PROBE_TOLERANCE * scale:
        raise RuntimeError(f"folding BatchNorm changed the probe logits by {error:.3g}; not folding this model")
    logger.debug("folded %d BatchNorm layers (probe difference %.2g)", len(pairs), error)
    fused.fused_for_inference = True
    return fused


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)
