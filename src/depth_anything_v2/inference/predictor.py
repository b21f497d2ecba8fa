"""``DepthPredictor``: images in (paths, PIL images, RGB or BGR arrays), ``DepthResult`` out.

    predictor = DepthPredictor.from_pretrained("vits", device="auto", precision="fp16")
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
from .backends import BACKENDS, Backend, TorchBackend, backend_from_model, open_backend, runtime_for_path
from .transforms import ChannelOrder, check_image, preprocess, resize_prediction, working_size

logger = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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
        model: the network (moved to ``device`` and cast to ``precision``; put in eval mode), or an open runtime
            backend (:mod:`depth_anything_v2.inference.backends`).
        input_size: the shorter side the network sees (multiple of 14; 518 as trained).
        device: ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ``"mps"``; ``None`` keeps the
            model's device.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``. Low precision keeps the encoder's residual stream and
            LayerNorms in fp32 (see ``modeling.dinov2``), so it cannot overflow where fp32 does not. OpenVINO
            takes it as its inference precision; ONNX Runtime runs the file as exported (fp32 only).
        backend: ``"torch"`` (``"auto"`` means the same for a model), ``"onnxruntime"`` or ``"openvino"``: the
            model is exported to ONNX once (cached by its weights: ``backends.export_cache_path``) and run by that
            runtime (``from_pretrained`` opens exported files directly).
        providers, ov_device, threads: ONNX Runtime execution providers, OpenVINO device (``CPU``, ``GPU``,
            ``NPU``, ``AUTO``) and CPU threads of the runtime backends.
    """

    def __init__(
        self,
        model: DepthAnythingV2 | Backend,
        *,
        input_size: int = 518,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        backend: str = "torch",
        providers: list[str] | None = None,
        ov_device: str | None = None,
        threads: int | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"expected precision one of {sorted(PRECISIONS)}, got {precision!r}")
        if backend not in BACKENDS:
            raise ValueError(f"expected backend one of {list(BACKENDS)}, got {backend!r}")
        working_size(input_size, input_size, input_size)  # validates input_size
        if isinstance(model, torch.nn.Module) and backend in ("onnxruntime", "openvino"):
            options = {"providers": providers, "ov_device": ov_device, "threads": threads, "precision": precision}
            model = backend_from_model(model, backend, **options)
        if isinstance(model, torch.nn.Module):
            dev = resolve_device(device) if device is not None else next(model.parameters()).device
            self.model = model.to(device=dev, dtype=PRECISIONS[precision]).eval()
            self.backend: Backend = TorchBackend(self.model)
        else:  # a runtime backend: it has encoder and max_depth like the model, and runs on its own device
            self.model = self.backend = model
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
        backend: str = "auto",
        providers: list[str] | None = None,
        ov_device: str | None = None,
        threads: int | None = None,
    ) -> DepthPredictor:
        """Load with :func:`depth_anything_v2.load_model` (any name, file or directory it accepts), or open an
        exported ``.onnx`` / ``.xml`` (``backend="auto"`` picks ONNX Runtime / OpenVINO by the suffix, and the
        kind and max_depth come from the file's metadata)."""
        options = {"providers": providers, "ov_device": ov_device, "threads": threads}
        if runtime_for_path(source) is not None:
            if backend == "torch":
                raise ValueError(f"{source} is an exported model: expected backend auto, onnxruntime or openvino")
            model = open_backend(source, backend, precision=precision, **options)
            for name, given, stored in (("encoder", encoder, model.encoder), ("max_depth", max_depth, model.max_depth)):
                if given is not None and given != stored:  # the file's metadata decides; a contradiction is an error
                    raise ValueError(f"{source} holds a model with {name} {stored!r}, but {name}={given!r} was given")
        else:
            model = load_model(source, encoder=encoder, max_depth=max_depth)
        backend = "torch" if backend == "auto" else backend
        return cls(model, input_size=input_size, device=device, precision=precision, backend=backend, **options)

    @property
    def device(self) -> torch.device:
        if isinstance(self.backend, TorchBackend):
            return next(self.model.parameters()).device
        return torch.device("cpu")  # where a runtime backend's outputs arrive

    @property
    def dtype(self) -> torch.dtype:
        if isinstance(self.backend, TorchBackend):
            return next(self.model.parameters()).dtype
        return torch.float32

    @property
    def is_metric(self) -> bool:
        return self.model.max_depth is not None

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
        out = self.backend(x)
        kind = "metric" if self.is_metric else "disparity"
        for (key, rgb, source), pred in zip(batch, out, strict=True):
            depth = resize_prediction(pred[None], rgb.shape[:2])[0].cpu().numpy()
            yield key, DepthResult(depth, kind, self.model.max_depth, source)
