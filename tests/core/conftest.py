"""Fixtures for fcanet_core tests: official networks with the reference weights, a tiny network."""
from __future__ import annotations

import shutil
import zlib
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import torch
from torch import nn

from fcanet_core import build_model
from fcanet_core.modeling import FCANet, HeadConfig
from fcanet_core.modeling.fuse import fuse_for_inference


@pytest.fixture(scope="session", autouse=True)
def single_torch_thread() -> Iterator[None]:
    """Run torch on one thread: on a shared, oversubscribed CPU, OpenMP teams of two are far slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fill_reference_weights(model: nn.Module, salt: str = "") -> nn.Module:
    """Fill every state_dict entry by the deterministic recipe of ``shared/reference/README.md``."""
    filled = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        rng = np.random.default_rng(zlib.crc32((salt + key).encode()))
        shape = tuple(value.shape)
        if key.endswith("running_var"):
            data = rng.random(shape) + 0.5
        elif key.endswith("running_mean"):
            data = rng.standard_normal(shape) * 0.1
        elif len(shape) == 1 and key.endswith("weight"):
            data = 1 + 0.1 * rng.standard_normal(shape)
        elif len(shape) == 1 and key.endswith("bias"):
            data = 0.1 * rng.standard_normal(shape)
        else:
            data = rng.standard_normal(shape) * np.sqrt(1 / np.prod(shape[1:]))
        filled[key] = torch.from_numpy(data.astype(np.float32))
    missing, unexpected = model.load_state_dict(filled, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    return model


@pytest.fixture(scope="session")
def official_model() -> Callable[[str], FCANet]:
    """``official_model(arch)``: the official network with the reference weights, built once per session.

    Treat it as read-only; copy it before changing it.
    """
    cache: dict[str, FCANet] = {}

    def get(arch: str) -> FCANet:
        if arch not in cache:
            cache[arch] = fill_reference_weights(build_model(arch)).eval()
        return cache[arch]

    return get


@pytest.fixture(scope="session")
def folded_model(official_model) -> Callable[[str], nn.Module]:
    """``folded_model(arch)``: :func:`fuse_for_inference` of ``official_model(arch)``, built once per session."""
    cache: dict[str, nn.Module] = {}

    def get(arch: str) -> nn.Module:
        if arch not in cache:
            cache[arch] = fuse_for_inference(official_model(arch))
        return cache[arch]

    return get


def _conv_bn(in_ch: int, out_ch: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU()]


def make_tiny_model(seed: int = 0) -> FCANet:
    """A small random FCA-Net (stride-4 and stride-16 features, narrow heads) for fast behaviour tests."""
    torch.manual_seed(seed)
    pre = nn.Sequential(*_conv_bn(5, 8, 2), *_conv_bn(8, 16, 2))
    last = nn.Sequential(*_conv_bn(16, 24, 2), *_conv_bn(24, 32, 2))
    heads = HeadConfig(first_widths=(8, 8, 8, 16, 16, 16), aspp_channels=16, side_channels=8,
                       decoder_channels=16, pred_channels=8, first_pred_channels=8)
    model = FCANet(pre, last, low_channels=16, high_channels=32, heads=heads)
    fill_reference_weights(model, salt=f"tiny{seed}")
    return model.eval()


@pytest.fixture
def tiny_model() -> FCANet:
    """A fresh tiny FCA-Net with non-trivial BN statistics."""
    return make_tiny_model()


@pytest.fixture(scope="session")
def four_images(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ``index.csv`` folder with four real ECSSD image/mask pairs."""
    src = shared_dir / "data" / "train" / "ecssd"
    rows = (src / "index.csv").read_text().splitlines()[1:5]
    dst = tmp_path_factory.mktemp("four")
    for row in rows:
        for rel in row.split(","):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / rel, dst / rel)
    (dst / "index.csv").write_text("image,mask\n" + "\n".join(rows) + "\n")
    return dst


