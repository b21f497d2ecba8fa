"""``DepthPredictor``: images in (paths, PIL images, RGB or BGR arrays), ``DepthResult`` out.

    predictor = DepthPredictor.from_pretrained("vits", device="auto", precision="auto")  # fp16 on GPUs
    result = predictor.predict("photo.jpg")
    result.prediction   # float32 (H, W) at the photo's resolution, in the space result.kind names:
    result.kind         # "disparity" (relative model: larger = closer) or "metric" (metres)
    result.depth_m      # the same array for a metric model (result.disparity for a relative one)

It owns pre-processing (the reference's, exactly), the device and the precision; the model stays a pure
``nn.Module``. Images that share a working size are batched together.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
import torch

from ..devices import precision_dtype, resolve_device, resolve_precision
from ..dpt import DepthAnythingV2
from ..io.images import read_image
from ..weights.loading import load_model
from .backends import BACKENDS, Backend, TorchBackend, backend_from_model, open_backend, runtime_for_path
from .tiling import Tiling, predict_tiled, resolve_tiling
from .transforms import ChannelOrder, check_image, preprocess, resize_prediction, working_size

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class DepthResult:
    """One prediction.

    Attributes:
        prediction: float32 ``(H, W)`` at the input image's resolution, in the space ``kind`` names. For
            ``kind == "disparity"`` (relative models) it is affine-invariant inverse depth: larger is closer, unknown
            scale and shift, >= 0. For ``kind == "metric"`` it is depth in metres, in ``(0, max_depth)``. Read it as
            :attr:`disparity` or :attr:`depth_m` to have the space checked.
        kind: ``"disparity"`` or ``"metric"``.
        max_depth: the metric model's range in metres; ``None`` for relative models.
        source: the image's path when it came from a file, else ``None``.
    """

    prediction: np.ndarray
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

    @property
    def disparity(self) -> np.ndarray:
        """The relative model's disparity; a ``ValueError`` for a metric prediction (use :attr:`depth_m`)."""
        if self.is_metric:
            raise ValueError("this is a metric prediction (metres): read result.depth_m, not result.disparity")
        return self.prediction

    @property
    def depth_m(self) -> np.ndarray:
        """The metric model's depth in metres; a ``ValueError`` for relative disparity (no metres to give)."""
        if not self.is_metric:
            raise ValueError(
                "this is relative disparity (no unit): read result.disparity, or align it to metres "
                "(depth_anything_v2.align.metric.align_to_metric)"
            )
        return self.prediction

    @property
    def depth(self) -> np.ndarray:
        """The earlier name of :attr:`prediction`, kept for existing code (disparity for relative models)."""
        return self.prediction

    @depth.setter
    def depth(self, value: np.ndarray) -> None:
        self.prediction = value


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


def batches_by_size(
    items: Iterable[T], input_size: int, batch_size: int, image: Callable[[T], np.ndarray]
) -> Iterator[list[T]]:
    """Consecutive ``items`` grouped into lists of at most ``batch_size`` whose images (``image(item)``) share one
    working size, the only images one forward pass can take together. Reads nothing ahead of the current group."""
    if batch_size < 1:
        raise ValueError(f"expected batch_size >= 1, got {batch_size}")
    batch: list[T] = []
    size = None
    for item in items:
        rgb = image(item)
        s = working_size(rgb.shape[0], rgb.shape[1], input_size)
        if batch and (s != size or len(batch) == batch_size):
            yield batch
            batch = []
        size = s
        batch.append(item)
    if batch:
        yield batch


class DepthPredictor:
    """Runs a :class:`DepthAnythingV2` on images: pre-processing, batching, device and precision.

    Args:
        model: the network (moved to ``device`` and cast to ``precision``; put in eval mode), or an open runtime
            backend (:mod:`depth_anything_v2.inference.backends`).
        input_size: the shorter side the network sees (multiple of 14; 518 as trained).
        device: ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ``"mps"``; ``None`` keeps the
            model's device.
        precision: ``"fp32"``, ``"fp16"``, ``"bf16"`` or ``"auto"`` (fp16 on CUDA and MPS, fp32 on the CPU,
            where half precision is slow: asking for it there logs a warning). Low precision keeps the
            encoder's residual stream and LayerNorms in fp32 (see ``modeling.dinov2``), so it cannot overflow
            where fp32 does not. ``self.precision`` is the one chosen. OpenVINO takes it as its inference
            precision (``"auto"``: fp32); ONNX Runtime runs the file as exported (fp32 only).
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
        if backend not in BACKENDS:
            raise ValueError(f"expected backend one of {list(BACKENDS)}, got {backend!r}")
        working_size(input_size, input_size, input_size)  # validates input_size
        if not isinstance(model, torch.nn.Module) or backend in ("onnxruntime", "openvino"):
            precision = "fp32" if precision == "auto" else precision
            precision_dtype(precision)  # validates the name
        if isinstance(model, torch.nn.Module) and backend in ("onnxruntime", "openvino"):
            options = {"providers": providers, "ov_device": ov_device, "threads": threads, "precision": precision}
            model = backend_from_model(model, backend, **options)
        if isinstance(model, torch.nn.Module):
            dev = resolve_device(device) if device is not None else next(model.parameters()).device
            precision = resolve_precision(precision, dev)
            self.model = model.to(device=dev, dtype=precision_dtype(precision)).eval()
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
        self,
        images: Any,
        *,
        channel_order: ChannelOrder = "rgb",
        batch_size: int = 1,
        tiling: Tiling | bool | None = None,
    ) -> DepthResult | list[DepthResult]:
        """Predict depth for one image (-> ``DepthResult``) or a list of images (-> list, same order).

        An image is a path, a PIL image, or a uint8 array ``(H, W, 3)`` in ``channel_order`` (``"rgb"``
        by default; pass ``"bgr"`` for OpenCV frames) or ``(H, W)`` grayscale.

        ``tiling``: ``True`` or a :class:`~depth_anything_v2.inference.tiling.Tiling` adds the detail of
        overlapping tiles to the global pass, seamlessly (for large images; see ``inference.tiling``); the
        tiles of one image go through the network in batches of ``batch_size``.
        """
        if isinstance(images, list | tuple):
            items = ((i, to_rgb(im, channel_order)) for i, im in enumerate(images))
            return [r for _, r in self._run(items, batch_size, tiling)]
        rgb, source = to_rgb(images, channel_order)
        return next(self._run(iter([(None, (rgb, source))]), batch_size if tiling else 1, tiling))[1]

    def predict_iter(
        self, items: Iterable[tuple[Any, np.ndarray]], *, batch_size: int = 1, tiling: Tiling | bool | None = None
    ) -> Iterator[tuple[Any, DepthResult]]:
        """Lazily predict ``(key, image_rgb_uint8)`` pairs, yielding ``(key, DepthResult)`` in order.

        Consecutive images that share a working size are batched (up to ``batch_size``); nothing is read
        ahead beyond one batch, so a generator over a huge folder or a video stays in flat memory. With
        ``tiling`` (as in :meth:`predict`) images go one at a time and their tiles are batched.
        """
        return self._run(((key, (check_image(rgb), None)) for key, rgb in items), batch_size, tiling)

    @torch.no_grad()
    def predict_tensor(
        self, images: torch.Tensor, *, forward: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Depth of RGB uint8 images ``(B, 3, H, W)`` (or one ``(3, H, W)``) -> float32 ``(B, H, W)``.

        Exactly what :meth:`predict` (and so ``depth-anything eval``) computes for the same pixels: the reference
        pre-processing per image (:func:`~depth_anything_v2.inference.transforms.preprocess`: OpenCV bicubic to the
        working size, ImageNet normalisation), the network on the batch, and
        :func:`~depth_anything_v2.inference.transforms.resize_prediction` back to ``(H, W)``. The result is on the
        predictor's device. ``forward`` replaces ``self.model`` for the network call (e.g. the trainer's DDP /
        FSDP wrapper under autocast): it takes the normalised ``(B, 3, h, w)`` batch and returns ``(B, h, w)``.

        Example::

            depth = predictor.predict_tensor(torch.from_numpy(image_rgb).permute(2, 0, 1))  # (1, H, W)
        """
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor of RGB uint8 images (B, 3, H, W), got {type(images).__name__}")
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
            raise ValueError(
                f"expected RGB uint8 images of shape (B, 3, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        height, width = images.shape[-2:]
        rgb = images.permute(0, 2, 3, 1).cpu().numpy()
        x = torch.cat([preprocess(im, self.input_size) for im in rgb]).to(self.device)
        out = (forward or self.model)(x.to(self.dtype))
        out = out[0] if isinstance(out, tuple) else out
        return resize_prediction(out.float(), (height, width))

    def _run(self, items: Iterator, batch_size: int, tiling: Tiling | bool | None = None) -> Iterator:
        if (plan := resolve_tiling(tiling)) is not None:
            if batch_size < 1:
                raise ValueError(f"expected batch_size >= 1, got {batch_size}")
            for key, (rgb, source) in items:
                yield key, predict_tiled(self, rgb, plan, batch_size=batch_size, source=source)
            return
        for batch in batches_by_size(items, self.input_size, batch_size, image=lambda kv: kv[1][0]):
            yield from self._infer([(key, rgb, source) for key, (rgb, source) in batch])

    @torch.inference_mode()
    def _infer(self, batch: list) -> Iterator[tuple[Any, DepthResult]]:
        x = torch.cat([preprocess(rgb, self.input_size) for _, rgb, _ in batch]).to(self.device)
        out = self.backend(x)
        kind = "metric" if self.is_metric else "disparity"
        for (key, rgb, source), pred in zip(batch, out, strict=True):
            depth = resize_prediction(pred[None], rgb.shape[:2])[0].cpu().numpy()
            yield key, DepthResult(depth, kind, self.model.max_depth, source)
