"""``DepthPredictor``: images in (paths, PIL images, RGB or BGR arrays), ``DepthResult`` out.

    predictor = DepthPredictor.from_pretrained("vits", device="auto", precision="auto")  # fp16 on GPUs
    result = predictor.predict("photo.jpg")
    result.depth        # float32 (H, W) at the photo's resolution
    result.kind         # "disparity" (relative model: larger = closer) or "metric" (metres)

It owns pre-processing (the reference's, exactly), the device and the precision; the model stays a pure
``nn.Module``. Images that share a working size are batched together.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from ..dpt import DepthAnythingV2
from ..io.images import read_image
from ..weights.loading import load_model, resolve_device
from .transforms import ChannelOrder, check_image, preprocess, resize_prediction, working_size

logger = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_warned_cpu_precisions: set[str] = set()


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` -> ``"fp16"`` on CUDA and MPS, ``"fp32"`` on the CPU; anything else as given (checked).

    fp16/bf16 on a CPU without native half-precision kernels is several times *slower* than fp32 (vits at
    266x266 on this project's AVX2 machine, ``benchmarks/bench_cpu_precision.py``: fp16 4.4-5.5x, bf16 5.8-6.3x
    the fp32 time), so asking for it there logs a warning, once per precision.
    """
    if precision == "auto":
        return "fp32" if device.type == "cpu" else "fp16"
    if precision not in PRECISIONS:
        raise ValueError(f"expected precision 'auto' or one of {sorted(PRECISIONS)}, got {precision!r}")
    if device.type == "cpu" and precision != "fp32" and precision not in _warned_cpu_precisions:
        _warned_cpu_precisions.add(precision)
        logger.warning(
            "precision %s on the CPU is usually several times slower than fp32 (no native %s kernels on most "
            "CPUs); use fp32 there, or precision 'auto' (fp16 on a GPU, fp32 on the CPU)",
            precision,
            precision,
        )
    return precision


@dataclass
class DepthResult:
    """One prediction.

    Attributes:
        depth: float32 ``(H, W)`` at the input image's resolution. For ``kind == "disparity"`` (relative
            models) it is affine-invariant inverse depth: larger is closer, unknown scale and shift, >= 0.
            For ``kind == "metric"`` it is depth in metres, in ``(0, max_depth)``.
        kind: ``"disparity"`` or ``"metric"``.
        max_depth: the metric model's range in metres; ``None`` for relative models.
        source: the image's path when it came from a file, else ``None``.
    """

    depth: np.ndarray
    kind: Literal["disparity", "metric"]
    max_depth: float | None = None
    source: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_metric(self) -> bool:
        return self.kind == "metric"

    @property
    def unit(self) -> str | None:
        """``"m"`` for metric depth, ``None`` for relative disparity (it has no unit)."""
        return "m" if self.is_metric else None


def to_rgb(image: Any, channel_order: ChannelOrder = "rgb") -> tuple[np.ndarray, str | None]:
    """Any supported image -> ``(RGB uint8 (H, W, 3), source path or None)``.

    Paths are decoded with :func:`depth_anything_v2.io.images.read_image` (RGB); PIL images are converted to RGB;
    arrays must be uint8 ``(H, W, 3)`` in ``channel_order`` or ``(H, W)`` grayscale.
    """
    if isinstance(image, str | os.PathLike):
        return read_image(image), os.fspath(image)
    if type(image).__module__.startswith("PIL."):
        return np.asarray(image.convert("RGB")), None
    if isinstance(image, np.ndarray) and image.ndim == 2 and image.dtype == np.uint8:
        return np.repeat(image[..., None], 3, axis=2), None
    check_image(image)
    if channel_order == "bgr":
        return np.ascontiguousarray(image[..., ::-1]), None
    if channel_order != "rgb":
        raise ValueError(f"expected channel_order 'rgb' or 'bgr', got {channel_order!r}")
    return image, None


class DepthPredictor:
    """Runs a :class:`DepthAnythingV2` on images: pre-processing, batching, device and precision.

    Args:
        model: the network (moved to ``device`` and cast to ``precision``; put in eval mode).
        input_size: the shorter side the network sees (multiple of 14; 518 as trained).
        device: ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ``"mps"``; ``None`` keeps the
            model's device.
        precision: ``"fp32"``, ``"fp16"``, ``"bf16"`` or ``"auto"`` (fp16 on CUDA and MPS, fp32 on the CPU,
            where half precision is slow: asking for it there logs a warning). Low precision keeps the
            encoder's residual stream and LayerNorms in fp32 (see ``modeling.dinov2``), so it cannot overflow
            where fp32 does not. ``self.precision`` is the one chosen.
    """

    def __init__(
        self,
        model: DepthAnythingV2,
        *,
        input_size: int = 518,
        device: str | torch.device | None = None,
        precision: str = "fp32",
    ) -> None:
        working_size(input_size, input_size, input_size)  # validates input_size
        dev = resolve_device(device) if device is not None else next(model.parameters()).device
        precision = resolve_precision(precision, dev)
        self.model = model.to(device=dev, dtype=PRECISIONS[precision]).eval()
        self.input_size = input_size
        self.precision = precision

    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike,
        *,
        encoder: str | None = None,
        max_depth: float | None = None,
        device: str | torch.device | None = "auto",
        precision: str = "fp32",
        input_size: int = 518,
    ) -> DepthPredictor:
        """Load with :func:`depth_anything_v2.load_model` (any name, file or directory it accepts)."""
        model = load_model(source, encoder=encoder, max_depth=max_depth)
        return cls(model, input_size=input_size, device=device, precision=precision)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def is_metric(self) -> bool:
        return self.model.is_metric

    def predict(
        self, images: Any, *, channel_order: ChannelOrder = "rgb", batch_size: int = 1
    ) -> DepthResult | list[DepthResult]:
        """Predict depth for one image (-> ``DepthResult``) or a list of images (-> list, same order).

        An image is a path, a PIL image, or a uint8 array ``(H, W, 3)`` in ``channel_order`` (``"rgb"``
        by default; pass ``"bgr"`` for OpenCV frames) or ``(H, W)`` grayscale.
        """
        if isinstance(images, list | tuple):
            items = ((i, to_rgb(im, channel_order)) for i, im in enumerate(images))
            return [r for _, r in self._run(items, batch_size)]
        rgb, source = to_rgb(images, channel_order)
        return next(self._run(iter([(None, (rgb, source))]), 1))[1]

    def predict_iter(
        self, items: Iterable[tuple[Any, np.ndarray]], *, batch_size: int = 1
    ) -> Iterator[tuple[Any, DepthResult]]:
        """Lazily predict ``(key, image_rgb_uint8)`` pairs, yielding ``(key, DepthResult)`` in order.

        Consecutive images that share a working size are batched (up to ``batch_size``); nothing is read
        ahead beyond one batch, so a generator over a huge folder or a video stays in flat memory.
        """
        return self._run(((key, (check_image(rgb), None)) for key, rgb in items), batch_size)

    def _run(self, items: Iterator, batch_size: int) -> Iterator[tuple[Any, DepthResult]]:
        if batch_size < 1:
            raise ValueError(f"expected batch_size >= 1, got {batch_size}")
        batch: list = []
        size = None
        for key, (rgb, source) in items:
            s = working_size(rgb.shape[0], rgb.shape[1], self.input_size)
            if batch and (s != size or len(batch) == batch_size):
                yield from self._infer(batch)
                batch = []
            size = s
            batch.append((key, rgb, source))
        if batch:
            yield from self._infer(batch)

    @torch.inference_mode()
    def _infer(self, batch: list) -> Iterator[tuple[Any, DepthResult]]:
        x = torch.cat([preprocess(rgb, self.input_size) for _, rgb, _ in batch]).to(self.device)
        out = self.model(x).float()
        kind = "metric" if self.is_metric else "disparity"
        for (key, rgb, source), pred in zip(batch, out, strict=True):
            depth = resize_prediction(pred[None], rgb.shape[:2])[0].cpu().numpy()
            yield key, DepthResult(depth, kind, self.model.max_depth, source)
