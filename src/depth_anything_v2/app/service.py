"""What the web app and the HTTP API do with an upload, independent of Gradio and FastAPI.

``DepthService.predict(data)`` takes the uploaded bytes and returns a :class:`Prediction`; the encoders below turn
it into response bodies. Every user mistake raises a :class:`RequestError` whose ``status_code`` is the HTTP status
to answer with (400 not an image, 413 too large, 422 bad parameter, 503 busy or model unavailable) and whose
message says what was expected and what came.

Guarantees:

* **One model in memory, loaded once.** :class:`ModelManager` keeps the loaded predictors (at most
  ``max_loaded``, least recently used evicted); switching models loads the new one on first use.
* **Requests are serialised.** One lock guards model loading and inference, so concurrent requests from the UI
  and the API run one after the other; at most ``max_pending`` wait, the next gets ``ServiceBusyError`` (503).
* **Limits before work.** The upload size is checked before decoding and the pixel count and aspect ratio from
  the image header before the pixels are decoded (a decompression bomb costs nothing).
* **Nothing touches the disk.** Decoding and encoding happen in memory; the only files are the UI's downloads
  (:class:`ResultStore`, a folder of the app's own that it sweeps).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

logger = logging.getLogger(__name__)

#: Largest accepted upload (bytes): 20 MiB holds any camera JPEG and most PNGs.
DEFAULT_MAX_UPLOAD_BYTES = 20 * 2**20
#: Largest accepted image (pixels): 16 MP (4900 x 3265). The model always runs at ``input_size`` on the shorter
#: side, but the outputs (and a point cloud of up to one point per pixel) are full resolution.
DEFAULT_MAX_PIXELS = 16_000_000
#: Longest/shorter side ratio beyond which an image is refused (the predict command's default): the model sees
#: the shorter side at ``input_size``, so a 100000 x 500 strip would run at 518 x 103600.
DEFAULT_MAX_ASPECT = 16.0
#: Requests allowed to wait for the model; the next one is answered 503.
DEFAULT_MAX_PENDING = 16
#: Longest video accepted by the video tab, in frames (10 s at 30 fps): the model holds the lock for all of it.
DEFAULT_MAX_VIDEO_FRAMES = 300

API_FORMATS: dict[str, tuple[str, str]] = {
    "png16": ("image/png", "depth16.png"),
    "npy": ("application/octet-stream", "depth.npy"),
}
ApiFormat = Literal["png16", "npy"]


# ------------------------------------------------------------------------------------------------------------
# Errors


class RequestError(ValueError):
    """A request the service refuses; ``status_code`` is the HTTP status to answer with."""

    status_code = 400


class InvalidImageError(RequestError):
    """The upload is empty, not an image, or corrupt (400)."""

    status_code = 400


class PayloadTooLargeError(RequestError):
    """The upload has too many bytes or the image too many pixels (413)."""

    status_code = 413


class InvalidParameterError(RequestError):
    """An unknown output format or model name, or an image outside the accepted shape (422)."""

    status_code = 422


class ServiceBusyError(RequestError):
    """Too many requests are already waiting for the model (503)."""

    status_code = 503


class ModelUnavailableError(RequestError):
    """The requested model could not be loaded (503): not downloaded while offline, or a bad file."""

    status_code = 503


# ------------------------------------------------------------------------------------------------------------
# Limits and decoding


@dataclass(frozen=True)
class Limits:
    """Upload limits. ``max_upload_bytes`` is the raw upload; ``max_pixels`` and ``max_aspect`` the decoded image
    (and each video frame); ``max_video_frames`` the length of a video."""

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_aspect: float = DEFAULT_MAX_ASPECT
    max_video_frames: int = DEFAULT_MAX_VIDEO_FRAMES

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1:
            raise ValueError(f"expected max_upload_bytes >= 1, got {self.max_upload_bytes}")
        if self.max_pixels < 1:
            raise ValueError(f"expected max_pixels >= 1, got {self.max_pixels}")
        if not self.max_aspect >= 1:
            raise ValueError(f"expected max_aspect >= 1, got {self.max_aspect}")
        if self.max_video_frames < 1:
            raise ValueError(f"expected max_video_frames >= 1, got {self.max_video_frames}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_upload_bytes": self.max_upload_bytes,
            "max_pixels": self.max_pixels,
            "max_aspect": self.max_aspect,
            "max_video_frames": self.max_video_frames,
        }


def _mib(n: int) -> str:
    return f"{n / 2**20:.3g} MiB" if n >= 2**20 else f"{n / 1024:.3g} KiB" if n >= 1024 else f"{n} bytes"


def _two_sizes(limit: int, size: int) -> tuple[str, str]:
    """``limit`` and ``size`` in MiB/KiB, or in exact bytes where the rounded forms would read the same."""
    a, b = _mib(limit), _mib(size)
    return (a, b) if a != b else (f"{a} ({limit} bytes)", f"{size} bytes")


def check_upload_size(size: int, limits: Limits) -> None:
    """Raise ``PayloadTooLargeError`` for more than ``limits.max_upload_bytes``, ``InvalidImageError`` for 0."""
    if size > limits.max_upload_bytes:
        expected, got = _two_sizes(limits.max_upload_bytes, size)
        raise PayloadTooLargeError(f"upload too large: expected at most {expected}, got {got}")
    if size == 0:
        raise InvalidImageError("empty upload: expected an image file, got 0 bytes")


def decode_image(data: bytes, limits: Limits = Limits()) -> np.ndarray:
    """Decode uploaded bytes to an upright RGB uint8 ``(H, W, 3)`` array, enforcing ``limits``.

    Decoded by :func:`depth_anything_v2.io.images.read_image` (EXIF orientation applied, alpha dropped, 16-bit
    scaled by the high byte, first frame of animations). The pixel limit is checked on the header, before the
    pixels are decoded; the side ratio after (the image is pixel-limited by then).

    Raises:
        PayloadTooLargeError: too many bytes or pixels (Pillow's decompression-bomb guard included).
        InvalidParameterError: an image more elongated than ``limits.max_aspect``.
        InvalidImageError: empty, not an image, truncated or corrupt.
    """
    from ..io.images import ImageReadError, ImageTooLargeError, NotAnImageError, read_image

    check_upload_size(len(data), limits)
    name = "upload"
    try:  # the toolkit's one decoder; its typed errors become HTTP statuses, with messages for a web user
        image_rgb = read_image(name, data=data, max_pixels=limits.max_pixels)
    except ImageTooLargeError as e:
        if e.limit is not None:
            raise PayloadTooLargeError(
                f"image too large: expected at most {e.limit / 1e6:g} megapixels, got {e.width}x{e.height} "
                f"= {e.width * e.height / 1e6:.1f} megapixels"  # type: ignore[operator]
            ) from None
        reason = str(e).removeprefix(f"{name}: ").split("; ")[0]  # without the command line's --max-side hint
        raise PayloadTooLargeError(reason) from None
    except NotAnImageError:
        raise InvalidImageError(
            f"not an image: expected a JPEG, PNG, WebP, BMP, TIFF or GIF file, got {len(data)} bytes of an "
            f"unrecognised format"
        ) from None
    except ImageReadError as e:
        raise InvalidImageError(str(e).removeprefix(f"{name}: ")) from None
    height, width = image_rgb.shape[:2]
    if max(width, height) > limits.max_aspect * min(width, height):  # pixel-limited already: cheap after decoding
        raise InvalidParameterError(
            f"image too elongated: expected a side ratio of at most {limits.max_aspect:g}, got "
            f"{width}x{height} ({max(width, height) / max(1, min(width, height)):.1f})"
        )
    return np.ascontiguousarray(image_rgb)


def _exif_focal_px(data: bytes, width: int, height: int) -> float | None:
    from ..io.pointcloud import exif_focal_px

    # exif_focal_px opens its argument with PIL, which takes a file object as well as a path.
    return exif_focal_px(io.BytesIO(data), width, height)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------------
# Models


@dataclass(frozen=True)
class ModelChoice:
    """A model the app offers.

    ``name`` is what the UI and the API call it (a published name such as ``"metric-hypersim-vits"``, or the
    weights file's name); ``source`` is what :func:`depth_anything_v2.load_model` gets.
    """

    name: str
    source: str
    encoder: str | None = None
    max_depth: float | None = None
    description: str = ""
    license: str | None = None
    is_published: bool = False

    @classmethod
    def published(cls, name: str) -> ModelChoice:
        from ..configs import PUBLISHED_MODELS

        pm = PUBLISHED_MODELS.get(name)
        if pm is None:
            raise ValueError(f"unknown model name {name!r}; expected one of {', '.join(PUBLISHED_MODELS)}")
        return cls(name, name, pm.encoder, pm.max_depth, pm.description, pm.license, is_published=True)

    @classmethod
    def weights(cls, path: str | Path, *, encoder: str | None = None, max_depth: float | None = None) -> ModelChoice:
        """A weights file; ``max_depth`` defaults to what the file's name says (published metric names)."""
        from ..weights.loading import max_depth_from_file_name

        path = Path(path)
        if max_depth is None:
            max_depth = max_depth_from_file_name(path)
        kind = f"metric, max {max_depth:g} m" if max_depth else "as stored"
        return cls(path.name, str(path), encoder, max_depth, f"weights file {path.name} ({kind})")


def published_choices() -> list[ModelChoice]:
    """Every published model, in the table's order."""
    from ..configs import PUBLISHED_MODELS

    return [ModelChoice.published(name) for name in PUBLISHED_MODELS]


class ModelManager:
    """Loads models on first use and keeps at most ``max_loaded`` of them (least recently used evicted).

    Not thread-safe by itself: :class:`DepthService` calls it under its lock.

    Requests get the models that are loaded, or that load from local files: a published model is loaded from
    the Hugging Face cache, never downloaded on a request (a download would hold the lock for minutes), unless
    ``download=True``. A failed load leaves the loaded models as they were: the least recently used one is
    unloaded only after the new one has loaded. Failure messages name no server paths (the log has details).

    Args:
        choices: the models offered; the first is the default unless ``default`` names another.
        loader: ``ModelChoice -> predictor`` (default: ``DepthPredictor.from_pretrained`` with ``input_size``,
            ``device``, ``precision`` and ``runtime``: backend, providers, ov_device, threads).
        preloaded: ready predictors by name (tests inject tiny models; the CLI loads the default up front).
    """

    def __init__(
        self,
        choices: Sequence[ModelChoice],
        *,
        default: str | None = None,
        loader: Callable[[ModelChoice], Any] | None = None,
        preloaded: dict[str, Any] | None = None,
        max_loaded: int = 1,
        input_size: int = 518,
        device: str = "auto",
        precision: str = "fp32",
        download: bool = False,
        runtime: dict[str, Any] | None = None,
    ) -> None:
        if not choices:
            raise ValueError("expected at least one model choice, got none")
        if max_loaded < 1:
            raise ValueError(f"expected max_loaded >= 1, got {max_loaded}")
        self.choices: dict[str, ModelChoice] = {}
        for c in choices:
            self.choices.setdefault(c.name, c)
        self.default = default or choices[0].name
        if self.default not in self.choices:
            raise ValueError(f"default model {self.default!r} is not among the choices {list(self.choices)}")
        self.max_loaded = max_loaded
        self.input_size = input_size
        self.device = device
        self.precision = precision
        self.download = download
        self.runtime = runtime or {}  # backend, providers, ov_device, threads (DepthPredictor.from_pretrained)
        self._loader = loader
        self._loaded: OrderedDict[str, Any] = OrderedDict(preloaded or {})

    def _load(self, choice: ModelChoice, *, download: bool) -> Any:
        from ..inference.predictor import DepthPredictor
        from ..weights.loading import resolve_published

        source = resolve_published(choice.source, download=download) if choice.is_published else choice.source
        return DepthPredictor.from_pretrained(
            source,
            encoder=choice.encoder,
            max_depth=choice.max_depth,
            device=self.device,
            precision=self.precision,
            input_size=self.input_size,
            **self.runtime,
        )

    def resolve(self, name: str | None) -> ModelChoice:
        """The choice called ``name`` (``None``: the default); ``InvalidParameterError`` for unknown names."""
        key = self.default if name in (None, "") else name
        try:
            return self.choices[key]  # type: ignore[index]
        except KeyError:
            raise InvalidParameterError(f"unknown model {name!r}; expected one of {', '.join(self.choices)}") from None

    def is_loaded(self, name: str) -> bool:
        return name in self._loaded

    def kind_of(self, name: str) -> str | None:
        """``"metric"``, ``"disparity"``, or ``None`` for a weights file not loaded yet (the file cannot tell)."""
        if name in self._loaded:
            return "metric" if self._loaded[name].is_metric else "disparity"
        choice = self.resolve(name)
        if choice.max_depth:
            return "metric"
        return "disparity" if choice.is_published else None

    def get(self, name: str | None = None, *, download: bool | None = None) -> tuple[ModelChoice, Any]:
        """``(choice, predictor)``, loading the model if needed (``ModelUnavailableError`` when that fails;
        its ``__cause__`` holds the full reason). ``download`` overrides the manager's setting (the command
        line loads its default model with ``download=True`` at start)."""
        from ..weights.loading import ModelUnavailableError as NotCached

        choice = self.resolve(name)
        if choice.name in self._loaded:
            self._loaded.move_to_end(choice.name)
            return choice, self._loaded[choice.name]
        t0 = time.perf_counter()
        try:
            if self._loader is not None:
                predictor = self._loader(choice)
            else:
                predictor = self._load(choice, download=self.download if download is None else download)
        except NotCached as e:
            logger.warning("model %s is not available: %s", choice.name, e)
            raise ModelUnavailableError(
                f"model {choice.name!r} is not available on this server: it has not been downloaded"
            ) from e
        except (OSError, ValueError, RuntimeError) as e:  # CheckpointError and FileNotFoundError included
            logger.warning("model %s could not be loaded: %s", choice.name, e)
            raise ModelUnavailableError(
                f"model {choice.name!r} could not be loaded on this server (the server log says why)"
            ) from e
        logger.info("model %s loaded in %.1f s", choice.name, time.perf_counter() - t0)
        while len(self._loaded) >= self.max_loaded:  # only now: a failed load never unloads a working model
            evicted, _ = self._loaded.popitem(last=False)
            logger.info("model %s unloaded (max_loaded=%d)", evicted, self.max_loaded)
        self._loaded[choice.name] = predictor
        return choice, predictor

    def max_depth_of(self, name: str) -> float | None:
        """The metric range of ``name``: the loaded model's, else what the choice says."""
        if name in self._loaded:
            return getattr(getattr(self._loaded[name], "model", None), "max_depth", None)
        return self.resolve(name).max_depth


# ------------------------------------------------------------------------------------------------------------
# Predictions


@dataclass
class Prediction:
    """One prediction, with what the outputs need.

    Attributes:
        depth: float32 ``(H, W)`` at the image's resolution: disparity (``kind == "disparity"``) or metres.
        kind: ``"disparity"`` (relative model: larger = closer, no unit) or ``"metric"`` (metres).
        image_rgb: the decoded upload, uint8 ``(H, W, 3)``.
        model: the model's name; ``max_depth`` its metric range (None for relative models).
        exif_focal_px: the focal length in pixels from the upload's EXIF, if any (for point clouds).
        key: content hash of the upload plus the model name (identifies the result).
        inference_s: seconds spent in the model (0 when served from the cache).
    """

    depth: np.ndarray
    kind: Literal["disparity", "metric"]
    image_rgb: np.ndarray
    model: str
    max_depth: float | None
    exif_focal_px: float | None
    key: str
    inference_s: float
    cached: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def unit(self) -> str | None:
        return "m" if self.kind == "metric" else None

    @property
    def is_metric(self) -> bool:
        return self.kind == "metric"

    def metadata(self) -> dict[str, Any]:
        """JSON-able description: model, kind, unit, size, value range, timing."""
        finite = self.depth[np.isfinite(self.depth)]
        return {
            "model": self.model,
            "kind": self.kind,
            "unit": self.unit,
            "max_depth": self.max_depth,
            "width": int(self.depth.shape[1]),
            "height": int(self.depth.shape[0]),
            "min": float(finite.min()) if finite.size else None,
            "max": float(finite.max()) if finite.size else None,
            "inference_ms": round(self.inference_s * 1000.0, 1),
        }


class DepthService:
    """Decodes uploads, runs the model one request at a time, and caches the last few results.

    Args:
        models: the :class:`ModelManager`.
        limits: upload limits.
        max_pending: requests allowed to wait for the model; more get ``ServiceBusyError`` (503).
        cache_size: results kept in memory, keyed by (upload hash, model), so that re-colouring an image or
            downloading it again does not rerun the model.

    Example::

        service = DepthService.from_predictor(DepthPredictor(build_model("tiny")))
        prediction = service.predict(open("photo.jpg", "rb").read())
        body, meta = encode_png16(prediction)
    """

    def __init__(
        self,
        models: ModelManager,
        limits: Limits = Limits(),
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        cache_size: int = 4,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"expected max_pending >= 1, got {max_pending}")
        self.models = models
        self.limits = limits
        self.max_pending = max_pending
        self.cache_size = cache_size
        self._lock = threading.Lock()  # the model: loading and inference, one request at a time
        self._cache_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending = 0
        self._cache: OrderedDict[str, Prediction] = OrderedDict()
        self.requests_served = 0
        self.model_runs = 0

    @classmethod
    def from_predictor(
        cls, predictor: Any, name: str = "model", *, description: str = "", **kwargs: Any
    ) -> DepthService:
        """A service around one ready predictor (no other model offered)."""
        max_depth = getattr(predictor.model, "max_depth", None) if hasattr(predictor, "model") else None
        choice = ModelChoice(name, name, max_depth=max_depth, description=description or name)
        return cls(ModelManager([choice], preloaded={name: predictor}), **kwargs)

    @property
    def default_model(self) -> str:
        return self.models.default

    def model_names(self) -> list[str]:
        return list(self.models.choices)

    def info(self) -> dict[str, Any]:
        """What ``GET /api/info`` returns: the models, the default, the limits and the formats."""
        return {
            "default_model": self.models.default,
            "models": [
                {
                    "name": c.name,
                    "kind": self.models.kind_of(c.name),
                    "unit": "m" if self.models.kind_of(c.name) == "metric" else None,
                    "max_depth": self.models.max_depth_of(c.name),
                    "description": c.description,
                    "license": c.license,
                    "loaded": self.models.is_loaded(c.name),
                }
                for c in self.models.choices.values()
            ],
            "limits": self.limits.as_dict(),
            "formats": list(API_FORMATS),
            "max_pending": self.max_pending,
        }

    def _enter_queue(self) -> None:
        with self._pending_lock:
            if self._pending >= self.max_pending:
                raise ServiceBusyError(
                    f"server busy: {self._pending} requests are already waiting for the model (limit "
                    f"{self.max_pending}); retry shortly"
                )
            self._pending += 1

    def _leave_queue(self) -> None:
        with self._pending_lock:
            self._pending -= 1

    @property
    def pending(self) -> int:
        """Requests waiting for or holding the model right now."""
        return self._pending

    def cached(self, key: str) -> Prediction | None:
        """The cached prediction with this ``key`` (``Prediction.key``), or ``None`` if it was evicted."""
        with self._cache_lock:
            return self._cache.get(key)

    def predict(self, data: bytes, model: str | None = None) -> Prediction:
        """Decode ``data`` (an image file's bytes) and predict its depth with ``model`` (default model: None).

        Raises a :class:`RequestError` subclass for anything the caller got wrong (see the module docstring).
        """
        choice = self.models.resolve(model)
        image_rgb = decode_image(data, self.limits)
        key = hashlib.sha256(data).hexdigest()[:32] + ":" + choice.name
        with self._cache_lock:
            self.requests_served += 1
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return Prediction(**{**hit.__dict__, "cached": True, "inference_s": 0.0})
        self._enter_queue()
        try:
            with self._lock:
                choice, predictor = self.models.get(choice.name)
                t0 = time.perf_counter()
                result = predictor.predict(image_rgb)
                seconds = time.perf_counter() - t0
                self.model_runs += 1
        finally:
            self._leave_queue()
        prediction = Prediction(
            depth=np.asarray(result.depth, np.float32),
            kind=result.kind,
            image_rgb=image_rgb,
            model=choice.name,
            max_depth=result.max_depth,
            exif_focal_px=_exif_focal_px(data, image_rgb.shape[1], image_rgb.shape[0]),
            key=key,
            inference_s=seconds,
        )
        logger.info(
            "%s: %dx%d, %s, %.0f ms", choice.name, image_rgb.shape[1], image_rgb.shape[0], result.kind, seconds * 1e3
        )
        with self._cache_lock:
            self._cache[key] = prediction
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return prediction

    def process_video(
        self,
        path: str | Path,
        out_dir: str | Path,
        stem: str,
        *,
        model: str | None = None,
        colormap: str = "Spectral_r",
        stabilize: bool = False,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> dict[str, Any]:
        """Depth for every frame of the video file ``path`` with :func:`depth_anything_v2.inference.video.process_video`.

        Writes ``<stem>_sbs.mp4`` (input | depth, one display range for the whole clip), ``<stem>_depth.npy``
        (float32 ``(N, H, W)``) and ``<stem>_depth.json`` into ``out_dir``; returns the summary, whose
        ``outputs`` maps format -> path. The model is held for the whole clip (other requests wait).

        Raises:
            PayloadTooLargeError: a file, frame size or frame count above the limits.
            InvalidImageError: not a readable video.
        """
        from ..inference.video import VideoReadError, open_video
        from ..inference.video import process_video as run_video

        path = Path(path)
        choice = self.models.resolve(model)
        check_upload_size(path.stat().st_size, self.limits)

        def clean(e: Exception) -> str:  # the upload's server path is nobody's business
            return str(e).replace(str(path), path.name)

        try:
            reader = open_video(path)
            info = reader.info
            reader.close()
        except VideoReadError as e:
            raise InvalidImageError(f"not a readable video: {clean(e)}") from None
        if info.width * info.height > self.limits.max_pixels:
            raise PayloadTooLargeError(
                f"video frames too large: expected at most {self.limits.max_pixels / 1e6:g} megapixels, got "
                f"{info.width}x{info.height}"
            )
        if info.frame_count is not None and info.frame_count > self.limits.max_video_frames:
            raise PayloadTooLargeError(
                f"video too long: expected at most {self.limits.max_video_frames} frames, got {info.frame_count}"
            )
        self._enter_queue()
        try:
            with self._lock:
                choice, predictor = self.models.get(choice.name)
                self.model_runs += 1
                try:
                    summary = run_video(
                        predictor,
                        path,
                        out_dir,
                        stem,
                        formats={"sbs", "npy"},
                        colormap=colormap,
                        stabilize=stabilize,
                        progress=progress,
                    )
                except VideoReadError as e:
                    raise InvalidImageError(f"cannot decode the video: {clean(e)}") from None
        finally:
            self._leave_queue()
        summary["model"] = choice.name
        return summary


# ------------------------------------------------------------------------------------------------------------
# Encoders (in memory)


def png16_bytes(depth: np.ndarray, kind: Literal["disparity", "metric"]) -> tuple[bytes, dict[str, Any]]:
    """16-bit PNG bytes with the mapping in the ``depth_anything_v2`` text chunk, and the mapping.

    Byte for byte what :func:`depth_anything_v2.io.outputs.write_depth_png16` writes (disparity: linear between the
    map's min and max; metric: millimetres, 0 = no value), so ``outputs.read_depth_png16`` reads it back.
    """
    from ..io.outputs import PNG16_KEY, encode_png, encode_png16

    values, mapping = encode_png16(depth, kind)
    return encode_png(values, {PNG16_KEY: json.dumps(mapping)}), mapping


def npy_bytes(depth: np.ndarray) -> bytes:
    """float32 ``.npy`` bytes: the model's values exactly."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(depth, np.float32), allow_pickle=False)
    return buf.getvalue()


def scale_of(mapping: dict[str, Any]) -> tuple[float, float]:
    """``(scale, offset)`` such that ``value = offset + scale * stored`` for a 16-bit mapping."""
    if mapping["kind"] == "metric":
        return float(mapping["unit_m"]), 0.0
    lo, hi = float(mapping["min"]), float(mapping["max"])
    return (hi - lo) / float(mapping.get("scale", 65535)), lo


def encode(prediction: Prediction, fmt: str) -> tuple[bytes, str, str, dict[str, Any]]:
    """Response body for ``fmt`` (``"png16"`` or ``"npy"``): ``(body, media type, file name, metadata)``.

    ``metadata`` adds to :meth:`Prediction.metadata` the ``format``, and ``scale``/``offset`` such that
    ``value = offset + scale * stored_value`` (``.npy``: 1 and 0; metric PNG: 0.001 m per count, 0 = no value;
    disparity PNG: the map's min/max spread over 0..65535), plus the PNG's ``encoding`` mapping.
    """
    if fmt not in API_FORMATS:
        raise InvalidParameterError(f"unknown format {fmt!r}; expected one of {', '.join(API_FORMATS)}")
    media_type, filename = API_FORMATS[fmt]
    meta = {**prediction.metadata(), "format": fmt}
    if fmt == "png16":
        body, mapping = png16_bytes(prediction.depth, prediction.kind)
        scale, offset = scale_of(mapping)
        meta.update(scale=scale, offset=offset, invalid=0 if prediction.is_metric else None, encoding=mapping)
    else:
        body = npy_bytes(prediction.depth)
        meta.update(scale=1.0, offset=0.0, invalid=None, dtype="float32")
    return body, media_type, filename, meta


# ------------------------------------------------------------------------------------------------------------
# Download files for the UI

_SAFE_STEM = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_stem(name: str | None, default: str = "image") -> str:
    """A file-name stem made of ``[A-Za-z0-9_.-]`` (at most 64 characters) from an uploaded file's name."""
    if not name:
        return default
    stem = _SAFE_STEM.sub("_", Path(name).stem).strip("._")[:64]
    return stem or default


class ResultStore:
    """The UI's download files: one folder per result under ``root``, swept by age and count.

    ``folder_for(key)`` returns the folder of a result (reused while it exists); before creating a new one,
    folders older than ``ttl_s`` seconds are deleted, and the oldest beyond ``max_results`` (counting the new one). ``close()`` removes
    ``root``. Nothing else is ever written.
    """

    def __init__(self, root: str | Path, *, ttl_s: float = 900.0, max_results: int = 32) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.ttl_s = ttl_s
        self.max_results = max_results
        self._by_key: dict[str, Path] = {}
        self._lock = threading.Lock()

    def sweep(self) -> int:
        """Delete expired result folders; returns how many were deleted."""
        now = time.time()
        try:
            dirs = sorted((p for p in self.root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        except FileNotFoundError:
            return 0
        doomed = [p for p in dirs if now - p.stat().st_mtime > self.ttl_s]
        keep = [p for p in dirs if p not in doomed]
        doomed += keep[: max(0, len(keep) - (self.max_results - 1))]  # room for the one about to be made
        for p in doomed:
            shutil.rmtree(p, ignore_errors=True)
        if doomed:
            gone = set(doomed)
            self._by_key = {k: v for k, v in self._by_key.items() if v not in gone}
        return len(doomed)

    def folder_for(self, key: str) -> tuple[Path, bool]:
        """``(folder, is_new)``: the existing folder for ``key``, or a fresh empty one."""
        with self._lock:
            folder = self._by_key.get(key)
            if folder is not None and folder.is_dir():
                return folder, False
            self.sweep()
            folder = self.root / uuid.uuid4().hex
            folder.mkdir()
            self._by_key[key] = folder
            return folder, True

    def discard(self, key: str) -> None:
        """Delete the folder of ``key`` (a failed result must not be reused)."""
        with self._lock:
            folder = self._by_key.pop(key, None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def write_downloads(prediction: Prediction, folder: Path, stem: str) -> list[Path]:
    """Write the UI's downloads into ``folder``: grayscale PNG, 16-bit PNG, float32 ``.npy`` and, for metric
    depth, a coloured point cloud (``.ply``; intrinsics from EXIF, else a 60 degree horizontal field of view).

    File names follow the predict command's (``outputs.FORMATS``): ``<stem>_gray.png``, ``<stem>_depth16.png``,
    ``<stem>.npy``, ``<stem>.ply``. Returns the paths in that order.
    """
    from ..io import outputs
    from ..io.pointcloud import intrinsics_for

    formats = ["gray", "png16", "npy"] + (["ply"] if prediction.is_metric else [])
    paths = {fmt: folder / f"{stem}{outputs.FORMATS[fmt]}" for fmt in formats}
    height, width = prediction.depth.shape
    intrinsics = intrinsics_for(width, height, exif_focal_px=prediction.exif_focal_px) if "ply" in paths else None
    return outputs.write_depth_outputs(
        paths, prediction.depth, prediction.kind, image_rgb=prediction.image_rgb, intrinsics=intrinsics
    )
