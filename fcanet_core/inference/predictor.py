"""Click → mask prediction with an FCA-Net, following the official inference by default.

Per call the whole click list is encoded again (FCA-Net has no state between clicks): the
image is resized so that its short side is 512, clicks are scaled by truncation, turned into
distance maps, the network runs once, and the sigmoid probability is resized back to the
original size with cv2 bilinear; the mask is ``prob > 0.5``. Options: SIS at the original
resolution, and zoom-in on the region around the clicks and the previous mask.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..clicks import Click, encode_clicks, validate_clicks
from ..modeling.fuse import fuse_for_inference
from .cancel import check_before_every_layer, raise_if_stopped, stoppable
from .sis import apply_sis
from .transforms import SHORT_SIDE, Crop, network_size, resize_image, resize_prob, scale_clicks, to_rgb_uint8, zoom_crop

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """``prob``: float32 H×W object probability; ``mask``: uint8 H×W 0/1 (both at the image's size)."""

    prob: np.ndarray
    mask: np.ndarray


#: Input short side of architectures trained at another scale than the official 512.
ARCH_INPUT_SHORT_SIDE = {"lite0": 352}


def model_input_short_side(model: nn.Module) -> int:
    """The input short side a model was trained for.

    A checkpoint's ``meta["input_short_side"]`` wins; else the architecture's default
    (:data:`ARCH_INPUT_SHORT_SIDE`); else the official 512. The bundled ``lite0`` was trained on
    images with a 352-pixel short side, and measured on GrabCut it is markedly more accurate when
    it sees objects at that scale than at 512.
    """
    meta = getattr(model, "meta", None) or {}
    if "input_short_side" in meta:
        return int(meta["input_short_side"])
    return ARCH_INPUT_SHORT_SIDE.get(getattr(model, "arch", ""), SHORT_SIDE)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function of a float32 array, in place (``exp`` overflow gives exactly 0)."""
    with np.errstate(over="ignore"):
        np.negative(logits, out=logits)
        np.exp(logits, out=logits)
        logits += 1
        return np.reciprocal(logits, out=logits)


class Predictor:
    """Runs an FCA-Net on an image and a click list.

    Args:
        model: ``model(image, pos_dist, neg_dist, first_dist) -> logits`` (an FCA-Net). By
            default a BN-folded copy is used and ``model`` is left as it is; with ``fuse=False``
            the model itself is used (put in eval mode, moved to ``device``).
        device: where to run; ``None`` = where the model's parameters are.
        sis: apply the structural integrity strategy to the mask.
        short_side: short side of the network input; ``None`` = the model's own
            (:func:`model_input_short_side`: 512 for the official networks).
        zoom_in: with a non-empty previous mask or more than one click, predict on the region
            around them (grown by ``zoom_expansion``, at least ``zoom_min_size`` pixels a side) at
            full network resolution, and paste the result back (probability 0 outside).
        flip_average: average the probabilities of the image and of its mirror image (a
            second forward pass: about twice the network time).
        fuse: fold BatchNorm into the convolutions (same outputs to ~1e-5, faster).
        channels_last: run convolutions in channels-last memory format (faster on CPU).
        max_long_side: the network input's long side is at most this (bounds the pixels of an
            elongated image); ``None`` = no bound (the official pipeline).
        network: runs instead of the torch model, called like it (e.g. an ONNX Runtime session,
            :class:`fcanet_core.inference.runtime.OnnxNetwork`); ``model`` then only gives the input scale.
            A network with ``run_numpy(arrays) -> logits ndarray`` is fed NumPy arrays directly, so a
            click runs no torch operation (each one a wake-up of torch's thread pool).
    """

    def __init__(self, model: nn.Module, device: str | torch.device | None = None, sis: bool = False,
                 short_side: int | None = None, zoom_in: bool = False, zoom_expansion: float = 1.4,
                 zoom_min_size: int = 200, flip_average: bool = False, fuse: bool = True,
                 channels_last: bool = True, max_long_side: int | None = None,
                 network: Callable[..., torch.Tensor] | None = None) -> None:
        if short_side is None:
            short_side = model_input_short_side(model)
        if short_side < 16:
            raise ValueError(f"short_side must be at least 16 pixels, got {short_side}")
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if network is None:
            model = fuse_for_inference(model) if fuse else model.eval()
            network = model.to(self.device, memory_format=self.memory_format)
        if isinstance(network, nn.Module):
            check_before_every_layer(network)
        self.model = network
        self._run_numpy: Callable[[list[np.ndarray]], np.ndarray] | None = getattr(network, "run_numpy", None)
        self.sis = sis
        self.short_side = short_side
        self.max_long_side = max_long_side
        self.zoom_in = zoom_in
        self.zoom_expansion = zoom_expansion
        self.zoom_min_size = zoom_min_size
        self.flip_average = flip_average

    def predict(self, image: np.ndarray, clicks: Sequence[Click], prev_mask: np.ndarray | None = None,
                box: tuple[float, float, float, float] | None = None,
                stop: threading.Event | None = None) -> Prediction:
        """Segment the object the clicks point at.

        Args:
            image: H×W (grey), H×W×3 (RGB) or H×W×4 (RGBA) array; see :func:`to_rgb_uint8`.
            clicks: clicks in image pixels, first click first; at least one, all inside.
            prev_mask: optional H×W previous mask (non-zero = object), used by zoom-in only.
            box: optional region of interest ``(x0, y0, x1, y1)`` in image pixels (``x1``, ``y1``
                exclusive): the prediction runs on the box and the clicks, enlarged by the zoom-in
                geometry, and pixels outside that region are background; ``prev_mask`` counts only
                when that region is the whole image.
            stop: once set (by a caller that gave up), the prediction ends at its next stage
                (:mod:`fcanet_core.inference.cancel`).

        Returns:
            :class:`Prediction` at the image's size.

        Raises:
            ValueError: for a malformed image, no clicks, a click outside the image, or a
                ``prev_mask`` of another size.
            PredictionStopped: ``stop`` was set.
        """
        with stoppable(stop):
            return self._predict(image, clicks, prev_mask, box)

    def _predict(self, image: np.ndarray, clicks: Sequence[Click], prev_mask: np.ndarray | None,
                 box: tuple[float, float, float, float] | None) -> Prediction:
        rgb = to_rgb_uint8(image)
        height, width = rgb.shape[:2]
        clicks = list(clicks)
        validate_clicks(clicks, height, width)
        if prev_mask is not None:
            prev_mask = np.asarray(prev_mask)
            if prev_mask.shape != (height, width):
                raise ValueError(f"prev_mask has shape {prev_mask.shape}, expected {(height, width)}")
        if box is not None:
            crop = self._box_crop(box, clicks, height, width)
            if crop is not None:
                inner = self.predict(crop.image(rgb), crop.clicks(clicks))
                mask = (crop.paste(inner.mask.astype(np.float32)) > 0.5).astype(np.uint8)
                return Prediction(prob=crop.paste(inner.prob), mask=mask)
        crop = None
        if self.zoom_in and ((prev_mask is not None and prev_mask.any()) or len(clicks) > 1):
            crop = zoom_crop(clicks, prev_mask, height, width, self.zoom_expansion, self.zoom_min_size)
        if crop is None:
            prob = self.probability(rgb, clicks)
        else:
            prob = crop.paste(self.probability(crop.image(rgb), crop.clicks(clicks)))
        mask = (prob > 0.5).astype(np.uint8)
        if self.sis:
            raise_if_stopped()
            mask = apply_sis(mask, clicks)
        return Prediction(prob=prob, mask=mask)

    def _box_crop(self, box: tuple[float, float, float, float], clicks: Sequence[Click], height: int,
                  width: int) -> Crop | None:
        """The region around the box's corners and the clicks (zoom-in geometry); ``None`` = whole image."""
        x0, y0, x1, y1 = box
        corners = [Click(x0, y0, True), Click(max(x0, x1 - 1), max(y0, y1 - 1), True)]
        return zoom_crop([*clicks, *corners], None, height, width, self.zoom_expansion, self.zoom_min_size)

    def probability(self, rgb: np.ndarray, clicks: Sequence[Click]) -> np.ndarray:
        """The official pipeline on a whole RGB uint8 image: float32 probability at its size."""
        arrays = self.input_arrays(rgb, clicks)
        raise_if_stopped()                                    # for networks without layer checks
        prob = self._network_probability(arrays)
        if self.flip_average:  # the mirror image's distance maps are the mirrored maps
            raise_if_stopped()
            mirror = [np.ascontiguousarray(a[..., ::-1]) for a in arrays]
            prob = (prob + self._network_probability(mirror)[..., ::-1]) / 2
        return resize_prob(prob[0, 0], rgb.shape[:2])

    def _network_probability(self, arrays: list[np.ndarray]) -> np.ndarray:
        """Sigmoid of the network's logits (N×1×H'×W' float32 ndarray) for its input arrays."""
        if self._run_numpy is not None:
            return sigmoid(self._run_numpy(arrays).astype(np.float32))
        with torch.inference_mode():
            return torch.sigmoid(self.model(*self._tensors(arrays)).float()).cpu().numpy()

    def _tensors(self, arrays: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Input arrays as tensors on the predictor's device, in its memory format."""
        return [torch.from_numpy(a).to(self.device).contiguous(memory_format=self.memory_format) for a in arrays]

    def input_arrays(self, rgb: np.ndarray, clicks: Sequence[Click]) -> list[np.ndarray]:
        """Network inputs for an RGB uint8 image and clicks in its pixels (official encoding), as NumPy arrays.

        Returns:
            ``[image 1×3×H'×W' (RGB/255), pos_dist, neg_dist, first_dist 1×1×H'×W']`` float32,
            H'×W' being the image resized to ``short_side``.
        """
        size = network_size(*rgb.shape[:2], self.short_side, self.max_long_side)
        small = resize_image(rgb, size)
        maps = encode_clicks(scale_clicks(clicks, rgb.shape[:2], size), *size)
        image = np.empty((1, 3, *size), np.float32)
        np.divide(small.transpose(2, 0, 1), np.float32(255), out=image[0])   # RGB/255, no mean/std
        return [image, *(m[None, None] for m in maps)]

    def network_inputs(self, rgb: np.ndarray, clicks: Sequence[Click]) -> list[torch.Tensor]:
        """:meth:`input_arrays` as tensors on the predictor's device, in its memory format."""
        return self._tensors(self.input_arrays(rgb, clicks))
