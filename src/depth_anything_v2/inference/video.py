"""Depth for video files, webcams and streams, in flat memory.

Video files (:func:`process_video`)
-----------------------------------
Frames are decoded one at a time, predicted (in batches of ``batch_size``) and written out at once, so memory
does not grow with the length of the clip. Decoding, prediction and writing overlap: frames are decoded in one
thread and colourised/encoded/written in another, with small bounded queues (a few frames) in between. Outputs, for a clip with output stem ``<stem>`` (``formats`` picks
them; any other image format is ignored for videos; without any of them, ``color`` is written):

==========  ====================  =========================================================================
format      file                  content
==========  ====================  =========================================================================
``color``   ``<stem>_depth.mp4``  colourised depth (``colormap``, Spectral_r by default, near = red)
``sbs``     ``<stem>_sbs.mp4``    input frame | 50 px white gap | colourised depth (the reference's layout)
``gray``    ``<stem>_gray.mp4``   8-bit grayscale depth, white = near
``npy``     ``<stem>_depth.npy``  float32 ``(N, H, W)``: exactly the model's values for every frame (not
                                  stabilised), plus ``<stem>_depth.json`` with the frame rate, the kind,
                                  the display range and, with stabilisation, the per-frame ``scale``/``shift``
==========  ====================  =========================================================================

``raw`` is accepted as another name for ``npy``. The ``.npy`` is a standard NumPy file written incrementally:
its header is written first with room to spare and rewritten with the true frame count at the end (the count
in the container is only a hint), so it opens with ``numpy.load(path, mmap_mode="r")`` without loading the
clip into memory.

Frame rate and count: with PyAV installed (``pip install av``; the ``video`` extra) the input is decoded with
FFmpeg through PyAV and the outputs are H.264 MP4s stamped with the input's exact rational frame rate (e.g.
``30000/1001``, not 29.97) and one output frame per decoded input frame (a variable-frame-rate input is written
at its average rate). Rotation metadata (phone videos) is applied. Without PyAV, OpenCV reads and writes
(MPEG-4 Part 2): the frame count is still preserved, but OpenCV stores the rate as a decimal with 3 digits
(``30000/1001`` becomes ``2997/100``), so the output drifts by ~1 frame per 9 hours; a warning says so.
Odd frame sizes are padded by one replicated row/column for H.264's 4:2:0 chroma.

Normalisation (one mapping for the whole clip, no flicker): the display range is fixed before any frame is
written. A first pass decodes the clip and predicts ``range_samples`` (24) frames spread evenly over it
(always including the first); the range is the 0.5th to 99.5th percentile of their pooled values (after
stabilisation, when on). Every frame is then coloured with that one range (values outside are clipped). The
sampled predictions are kept in a hidden temporary folder in ``out_dir`` (``range_samples`` float32 frames on
disk, not in memory; removed at the end) and reused in the second pass, so each frame is predicted exactly once;
clips shorter than ``range_samples`` frames are therefore predicted entirely in the first pass. When the
container gives no frame count (and PyAV cannot count the packets) the first ``range_samples`` frames are used.
Metric depth is drawn with the ramp reversed (near = red), as ``outputs.display_range`` does.

Stabilisation (``stabilize=True``, :class:`TemporalStabilizer`): a relative model's disparity has a scale and
shift that wobble from frame to frame. Each frame's disparity ``d`` (downsampled to at most 128 px on its long
side) is mapped onto the previous *stabilised* frame ``R`` by ``a * d + b``: RANSAC over pixel pairs finds the
pixels that agree (within 5 % of R's 2-98 % range; ``metric_align.robust_scale_shift``), so moving objects and
newly uncovered areas do not count, and ``a, b`` then match the spread and mean of the agreeing pixels
(reduced major axis, which, unlike least squares, does not shrink ``a`` by the current frame's noise; such a
bias would compound frame after frame). The first frame is the anchor: the whole clip is shown in its scale.
When fewer than 40 % of the pixels agree (a scene cut, a very fast pan) the frame keeps the previous ``a, b``, so
the scale carries over the cut without a jump. Metric predictions get a scale only (``b = 0``; the median ratio),
since metric depth has no free shift. Measured on synthetic clips (tests/test_video.py) with 0.7-1.3x scale and
+-0.3 shift jitter per frame: the frame-to-frame spread of the scale drops from 0.2 to ~0.002; with a static
camera the clip stays within 0.1 % of the first frame's scale; a pan of 1/128 of the frame width per frame plus a
moving object drifts by ~4 % over 120 frames (the anchor is a chain, so slow drift under camera motion is the
known limit). Stabilisation changes only the visualisation; the ``.npy`` keeps the model's values and the
JSON records ``a``/``b`` per frame (stabilised = ``scale * raw + shift``).

Writes are atomic: every output goes to a temporary file in ``out_dir`` and is moved into place with
``os.replace`` only when the whole clip is done; a failure or a kill leaves no partial output under a final name.

Cameras and streams (:func:`run_stream`)
----------------------------------------
A webcam index (``"0"``), a device (``/dev/video0``) or a URL (``rtsp://``, ``http(s)://``, ``udp://``, ...)
is read with OpenCV. The display range follows the stream (an exponential moving average of each frame's 2nd
and 98th percentile, momentum 0.1), since a live stream has no "whole clip". With ``show`` the window shows
input | depth with a frames-per-second readout; ``q`` or Esc ends it. With ``out`` the colourised depth is
written (no overlay): a live source is stamped with wall-clock timestamps (so it plays back in real time even
when the model runs slower than the camera; PyAV needed, else the nominal rate), a file source keeps its rate.
Ctrl-C ends a recording cleanly and keeps the file.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..align.metric import AlignmentError, robust_scale_shift
from ..io import outputs
from ..io.atomic import temp_path
from .prefetch import Background

__all__ = [
    "VIDEO_EXTENSIONS",
    "VIDEO_FORMATS",
    "DisplayUnavailableError",
    "TemporalStabilizer",
    "VideoInfo",
    "VideoReadError",
    "is_stream_source",
    "is_video_path",
    "open_video",
    "process_video",
    "run_stream",
    "video_output_paths",
]

log = logging.getLogger(__name__)

#: File suffixes treated as video (lower case).
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts", ".m2ts",
     ".3gp", ".ogv"}
)  # fmt: skip

#: Video output format -> file-name suffix appended to the stem (``npy`` also writes ``<stem>_depth.json``).
VIDEO_FORMATS: dict[str, str] = {
    "color": "_depth.mp4",
    "sbs": "_sbs.mp4",
    "gray": "_gray.mp4",
    "npy": "_depth.npy",
}
_FORMAT_ALIASES = {"raw": "npy"}
_JSON_SUFFIX = "_depth.json"
_STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "rtp", "srt", "mms", "mmsh")
_DEVICE_RE = re.compile(r"^/dev/video\d+$")
_RANGE_PERCENTILES = (0.5, 99.5)
_RANGE_VALUES_PER_FRAME = 20_000
_DEFAULT_FPS = Fraction(30)


class VideoReadError(ValueError):
    """A video file, camera or stream cannot be opened or decoded; the message names it and says why."""


class DisplayUnavailableError(RuntimeError):
    """``show=True`` but OpenCV cannot open a window (headless build or no display)."""


def is_video_path(path: str | os.PathLike) -> bool:
    """True when ``path`` has a video suffix (:data:`VIDEO_EXTENSIONS`); the file is not opened."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_stream_source(s: str) -> bool:
    """True for a webcam index (``"0"``), a ``/dev/videoN`` device or a stream URL (``rtsp://`` etc.).

    A bare number names a camera unless a file of that name exists in the working directory.
    """
    s = str(s).strip()
    if s.isdigit():
        return not Path(s).exists()
    if _DEVICE_RE.match(s):
        return True
    scheme, sep, _ = s.partition("://")
    return bool(sep) and scheme.lower() in _STREAM_SCHEMES


def video_output_paths(out_dir: str | os.PathLike, stem: str, formats: set[str] | frozenset[str]) -> dict[str, Path]:
    """The files :func:`process_video` writes for ``formats`` (for ``--skip-existing``): name -> path.

    Includes ``"json"`` when ``npy`` is requested; falls back to ``color`` when no video format is requested.
    """
    wanted = _video_formats(formats)
    out = Path(out_dir)
    paths = {name: out / f"{stem}{VIDEO_FORMATS[name]}" for name in VIDEO_FORMATS if name in wanted}
    if "npy" in wanted:
        paths["json"] = out / f"{stem}{_JSON_SUFFIX}"
    return paths


def _video_formats(formats: set[str] | frozenset[str]) -> set[str]:
    wanted = {_FORMAT_ALIASES.get(f, f) for f in formats} & set(VIDEO_FORMATS)
    return wanted or {"color"}


# --------------------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video. ``frame_count`` is a hint (``None`` when unknown)."""

    width: int
    height: int
    fps: Fraction
    frame_count: int | None
    backend: Literal["pyav", "opencv"]


def _have_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


class _PyAVReader:
    """Decodes the first video stream with PyAV; yields RGB uint8 frames with rotation metadata applied."""

    def __init__(self, path: Path, count_frames: bool = True) -> None:
        import av

        self.path = path
        try:
            self.container = av.open(str(path))
        except (av.FFmpegError, OSError) as e:
            raise VideoReadError(f"{path}: not a readable video ({e})") from None
        if not self.container.streams.video:
            self.container.close()
            raise VideoReadError(f"{path}: no video stream")
        stream = self.container.streams.video[0]
        stream.thread_type = "AUTO"
        self.stream = stream
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or rate <= 0:
            log.warning("%s: no frame rate in the container; assuming %s fps", path, _DEFAULT_FPS)
            rate = _DEFAULT_FPS
        count = int(stream.frames or 0) or (self._count_packets() if count_frames else 0)
        width, height = stream.codec_context.width, stream.codec_context.height
        if width <= 0 or height <= 0:
            self.container.close()
            raise VideoReadError(f"{path}: video stream has no frame size")
        self.info = VideoInfo(width, height, Fraction(rate), count or None, "pyav")

    def _count_packets(self) -> int:
        """Count the stream's packets without decoding (mkv/webm carry no frame count)."""
        import av

        try:
            n = sum(1 for p in self.container.demux(self.stream) if p.size)
            self.container.seek(0)
        except av.FFmpegError:
            return 0
        return n

    def frames(self) -> Iterator[np.ndarray]:
        import av

        try:
            for frame in self.container.decode(self.stream):
                rgb = frame.to_ndarray(format="rgb24")
                # frame.rotation is the display matrix's counter-clockwise angle; np.rot90 turns the same way.
                k = round(getattr(frame, "rotation", 0) / 90) % 4
                yield np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb
        except av.FFmpegError as e:
            raise VideoReadError(f"{self.path}: decoding failed ({e})") from None

    def close(self) -> None:
        self.container.close()


class _OpenCVReader:
    """OpenCV capture for files (when PyAV is missing), cameras and streams; yields RGB uint8 frames."""

    def __init__(self, source: str | Path, live: bool = False) -> None:
        import cv2

        self.path = source
        src: str | int = int(source) if isinstance(source, str) and source.strip().isdigit() else str(source)
        self.cap = cv2.VideoCapture(src)
        if not self.cap.isOpened():
            if isinstance(src, int):
                raise VideoReadError(f"{source}: cannot open camera {src}")
            if Path(src).is_file():
                raise VideoReadError(f"{source}: not a readable video (OpenCV cannot open it)")
            raise VideoReadError(f"{source}: cannot open (no such file, or the stream is unreachable)")
        if live:
            self.cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # always show the newest frame, not a growing backlog
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        if not (math.isfinite(fps) and fps > 0):
            rate = _DEFAULT_FPS
            if not live:
                log.warning("%s: no frame rate reported; assuming %s fps", source, _DEFAULT_FPS)
        else:
            # OpenCV reports a double; 1001 recovers the NTSC family (30000/1001 etc.) exactly.
            rate = Fraction(fps).limit_denominator(1001)
        count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT))
        width = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.info = VideoInfo(width, height, rate, count if count > 0 else None, "opencv")

    def frames(self) -> Iterator[np.ndarray]:
        import cv2

        while True:
            ok, frame_bgr = self.cap.read()
            if not ok or frame_bgr is None:
                return
            if frame_bgr.ndim == 2:
                frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
            yield cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self.cap.release()


def open_video(path: str | os.PathLike, *, backend: Literal["auto", "pyav", "opencv"] = "auto"):
    """Open a video file for sequential RGB decoding: returns a reader with ``.info`` (:class:`VideoInfo`),
    ``.frames()`` (iterator of RGB uint8 ``(H, W, 3)``) and ``.close()``.

    ``backend="auto"`` uses PyAV when installed, else OpenCV. Raises :class:`VideoReadError`.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoReadError(f"{path}: empty file")
    if backend == "pyav" or (backend == "auto" and _have_pyav()):
        if backend == "pyav" and not _have_pyav():
            raise ImportError("PyAV is needed for backend='pyav': pip install av (or the 'video' extra)")
        return _PyAVReader(path)
    if backend not in ("auto", "opencv"):
        raise ValueError(f"expected backend 'auto', 'pyav' or 'opencv', got {backend!r}")
    return _OpenCVReader(path)


# --------------------------------------------------------------------------------------------------------
# Writing


class _PyAVWriter:
    """H.264 MP4 at an exact rational rate (``timestamps="rate"``) or wall-clock timestamps (``"wallclock"``)."""

    def __init__(self, path: Path, width: int, height: int, fps: Fraction, *, timestamps: str = "rate") -> None:
        import av

        self.path = path
        self.width, self.height = width, height
        self.container = av.open(str(path), "w", format="mp4")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = self.container.add_stream(codec, rate=fps)
        # 4:2:0 chroma needs even sides: pad by one replicated row/column where odd.
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "17", "preset": "veryfast"}
        self.time_base = Fraction(1, 1000) if timestamps == "wallclock" else 1 / Fraction(fps)
        stream.codec_context.time_base = self.time_base
        self.stream = stream
        self.wallclock = timestamps == "wallclock"
        self.count = 0
        self._t0: float | None = None
        self._last_pts = -1

    def write(self, rgb: np.ndarray) -> None:
        import av

        if rgb.shape[1] != self.stream.width or rgb.shape[0] != self.stream.height:
            rgb = np.pad(rgb, ((0, self.height % 2), (0, self.width % 2), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        if self.wallclock:
            now = time.monotonic()
            self._t0 = now if self._t0 is None else self._t0
            pts = max(round((now - self._t0) * 1000), self._last_pts + 1)
        else:
            pts = self.count
        frame.pts, frame.time_base = pts, self.time_base
        self._last_pts = pts
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.count += 1

    def close(self) -> None:
        try:
            for packet in self.stream.encode():
                self.container.mux(packet)
        finally:
            self.container.close()


class _OpenCVWriter:
    """MPEG-4 Part 2 MP4 via OpenCV (float frame rate: see the module docstring)."""

    def __init__(self, path: Path, width: int, height: int, fps: Fraction) -> None:
        import cv2

        self.path = path
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
        if not self.writer.isOpened():
            raise OSError(f"{path}: OpenCV cannot open a video writer")
        self.count = 0

    def write(self, rgb: np.ndarray) -> None:
        self.writer.write(np.ascontiguousarray(rgb[..., ::-1]))
        self.count += 1

    def close(self) -> None:
        self.writer.release()


def _open_writer(path: Path, width: int, height: int, fps: Fraction, *, backend: str, timestamps: str = "rate"):
    if backend == "pyav":
        return _PyAVWriter(path, width, height, fps, timestamps=timestamps)
    if (fps * 1000).denominator != 1:
        # OpenCV's FFmpeg writer keeps the rate to 3 decimals (30000/1001 -> 2997/100).
        log.warning("frame rate %s stored by OpenCV as %.3f fps (pip install av for the exact rate)", fps, float(fps))
    return _OpenCVWriter(path, width, height, fps)


class _NpyAppender:
    """Writes a float32 ``(N, H, W)`` ``.npy`` one frame at a time; the header gets the true ``N`` at the end.

    The header is a standard NumPy format 1.0 header padded to a fixed 128 bytes, so rewriting it with the final
    count never moves the data.
    """

    _HEADER_BYTES = 128

    def __init__(self, path: Path, height: int, width: int) -> None:
        self.path, self.height, self.width = path, height, width
        self.file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.count = 0
        self.file.write(self._header(0))

    def _header(self, n: int) -> bytes:
        body = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {self.height}, {self.width}), }}"
        pad = self._HEADER_BYTES - 10 - len(body) - 1
        if pad < 0:
            raise ValueError(f"frame shape too large for the .npy header: {(n, self.height, self.width)}")
        header = body + " " * pad + "\n"
        return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1")

    def write(self, values: np.ndarray) -> None:
        if values.shape != (self.height, self.width):
            raise ValueError(f"expected a frame of shape {(self.height, self.width)}, got {values.shape}")
        self.file.write(np.ascontiguousarray(values, dtype="<f4").tobytes())
        self.count += 1

    def close(self) -> None:
        self.file.seek(0)
        self.file.write(self._header(self.count))
        self.file.close()


class _AtomicOutputs:
    """Temporary files in ``out_dir`` moved to their final names by :meth:`commit`, deleted by :meth:`abort`."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.pending: dict[Path, Path] = {}

    def temp_for(self, final: Path) -> Path:
        # One temporary per output (io.atomic.temp_path keeps the suffix: OpenCV picks the container from it);
        # all of a clip's files are committed together.
        tmp = temp_path(self.out_dir / final.name)
        self.pending[final] = tmp
        return tmp

    def commit(self) -> None:
        for final, tmp in self.pending.items():
            os.replace(tmp, final)
        self.pending.clear()

    def abort(self) -> None:
        for tmp in self.pending.values():
            tmp.unlink(missing_ok=True)
        self.pending.clear()


# --------------------------------------------------------------------------------------------------------
# Stabilisation and display range


class TemporalStabilizer:
    """Aligns each frame's prediction to the previous aligned frame (see the module docstring).

    Args:
        kind: ``"disparity"`` (fit scale and shift) or ``"metric"`` (fit a scale only).
        grid: the fit runs on the frame downsampled to at most ``grid`` px on its long side (128).
        inlier_rtol: a pixel agrees when within this fraction of the reference's 2-98 % range (disparity) or of
            its own reference value (metric) (0.05).
        reset_below: below this fraction of agreeing pixels the frame counts as a cut (0.4).

    Calling it with a float ``(H, W)`` frame returns ``(stabilised (H, W) float32, scale, shift)``.
    """

    def __init__(
        self,
        kind: Literal["disparity", "metric"] = "disparity",
        *,
        grid: int = 128,
        inlier_rtol: float = 0.05,
        reset_below: float = 0.4,
    ) -> None:
        if kind not in ("disparity", "metric"):
            raise ValueError(f"expected kind 'disparity' or 'metric', got {kind!r}")
        if grid < 8:
            raise ValueError(f"expected grid >= 8, got {grid}")
        self.kind, self.grid = kind, grid
        self.inlier_rtol, self.reset_below = inlier_rtol, reset_below
        self.reference: np.ndarray | None = None
        self.scale, self.shift = 1.0, 0.0
        self.resets = 0

    def _small(self, values: np.ndarray) -> np.ndarray:
        import cv2

        h, w = values.shape
        f = min(1.0, self.grid / max(h, w))
        size = (max(1, round(w * f)), max(1, round(h * f)))
        return cv2.resize(values, size, interpolation=cv2.INTER_AREA) if f < 1 else values

    def __call__(self, values: np.ndarray) -> tuple[np.ndarray, float, float]:
        values = np.asarray(values, np.float32)
        small = self._small(values)
        if self.reference is None or self.reference.shape != small.shape:
            self.reference = small.copy()
            self.scale, self.shift = 1.0, 0.0
            return values, 1.0, 0.0
        ref = self.reference
        valid = np.isfinite(small) & np.isfinite(ref)
        if self.kind == "metric":
            valid &= (small > 0) & (ref > 0)
        scale, shift, agree = self._fit(small[valid], ref[valid])
        if scale is None or agree < self.reset_below:
            # Scene cut or fast motion: keep the previous mapping so that the scale carries over.
            self.resets += 1
        else:
            self.scale, self.shift = scale, shift
        self.reference = (self.scale * small + self.shift).astype(np.float32)
        out = (self.scale * values + self.shift).astype(np.float32)
        return out, self.scale, self.shift

    def _fit(self, x: np.ndarray, y: np.ndarray) -> tuple[float | None, float, float]:
        if x.size < 16:
            return None, 0.0, 0.0
        if self.kind == "metric":
            s = float(np.median(y / x))
            agree = float(np.mean(np.abs(s * x - y) <= self.inlier_rtol * y))
            return s, 0.0, agree
        lo, hi = np.percentile(y, (2, 98))
        tol = self.inlier_rtol * max(float(hi - lo), 1e-6 * max(abs(float(hi)), 1.0))
        try:
            s, t, inliers = robust_scale_shift(x, y, tol, hypotheses=64, max_score_points=4096, seed=self.resets)
        except AlignmentError:
            return None, 0.0, 0.0
        # Reduced-major-axis refit on the inliers: std ratio and means. Least squares would shrink the scale by
        # the noise and motion misalignment of the current frame (regression dilution), a bias that compounds
        # along the chain of frames into a drift; matching spreads treats both frames alike.
        xi, yi = x[inliers].astype(np.float64), y[inliers].astype(np.float64)
        sx = float(xi.std())
        if xi.size >= 16 and sx > 0:
            s = float(yi.std()) / sx
            t = float(yi.mean() - s * xi.mean())
        return s, t, float(inliers.mean())


def _range_values(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    flat = values[np.isfinite(values)]
    if flat.size > _RANGE_VALUES_PER_FRAME:
        flat = rng.choice(flat, _RANGE_VALUES_PER_FRAME, replace=False)
    return flat.astype(np.float32)


def _display_range(pooled: np.ndarray, kind: str) -> tuple[float, float]:
    """``(vmin, vmax)`` for ``outputs.colorize``: robust percentiles, reversed for metric depth."""
    if pooled.size == 0:
        return 0.0, 0.0
    lo, hi = (float(v) for v in np.percentile(pooled, _RANGE_PERCENTILES))
    return (hi, lo) if kind == "metric" else (lo, hi)


def _sbs(frame_rgb: np.ndarray, color_rgb: np.ndarray) -> np.ndarray:
    gap = np.full((frame_rgb.shape[0], outputs.SBS_GAP_PX, 3), 255, np.uint8)
    return np.concatenate([frame_rgb, gap, color_rgb], axis=1)


# --------------------------------------------------------------------------------------------------------
# Overlap: decoding and writing run in their own threads (FFmpeg, OpenCV and numpy release the GIL), with
# bounded queues between them and the model, so memory stays flat and the model is not left waiting on I/O.


class _Sink:
    """Runs submitted callables in order in one worker thread, at most ``maxsize`` waiting.

    The first error stops the work; it is re-raised by the next :meth:`submit` or by :meth:`close`.
    """

    def __init__(self, maxsize: int, name: str) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            fn = self._queue.get()
            if fn is None:
                return
            if self._error is None:
                try:
                    fn()
                except BaseException as e:
                    self._error = e

    def submit(self, fn: Callable[[], None]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(fn)

    def close(self, *, raise_error: bool = True) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
        if raise_error and self._error is not None:
            raise self._error


# --------------------------------------------------------------------------------------------------------
# Video files


def _predict_stream(
    predictor: Any,
    frames: Iterator[tuple[int, np.ndarray]],
    batch_size: int,
    cached: dict[int, Path] | None = None,
) -> Iterator[tuple[int, np.ndarray, Any]]:
    """``(index, frame_rgb, DepthResult | cached float32 depth)`` in order; at most ``batch_size`` frames held."""
    cached = cached or {}
    chunk: list[tuple[int, np.ndarray]] = []

    def flush() -> Iterator[tuple[int, np.ndarray, Any]]:
        todo = [(i, f) for i, f in chunk if i not in cached]
        results = dict(predictor.predict_iter(iter(todo), batch_size=batch_size)) if todo else {}
        for i, f in chunk:
            yield i, f, (np.load(cached[i]) if i in cached else results[i])

    for item in frames:
        chunk.append(item)
        if len(chunk) >= batch_size:
            yield from flush()
            chunk = []
    if chunk:
        yield from flush()


def _depth_of(result: Any) -> tuple[np.ndarray, str, float | None]:
    if isinstance(result, np.ndarray):
        return result, "", None
    return np.asarray(result.prediction, np.float32), result.kind, getattr(result, "max_depth", None)


class _ClipWriter:
    """Per-frame work of pass 2 (runs in the writer thread): raw values, stabilisation, colour, encoding."""

    def __init__(
        self,
        paths: dict[str, Path],
        visual: set[str],
        raw: bool,
        atomic: _AtomicOutputs,
        fps: Fraction,
        backend: str,
        colormap: str,
        display: tuple[float, float],
        stabilize: bool,
        source: Path,
    ) -> None:
        self.paths, self.visual, self.raw, self.atomic = paths, visual, raw, atomic
        self.source = source
        self.fps, self.backend, self.colormap, self.display = fps, backend, colormap, display
        self.stabilize = stabilize
        self.kind = "disparity"
        self.width: int | None = None
        self.height: int | None = None
        self.writers: dict[str, Any] = {}
        self.npy: _NpyAppender | None = None
        self.stabilizer: TemporalStabilizer | None = None
        self.scales: list[float] = []
        self.shifts: list[float] = []

    def _open(self, h: int, w: int) -> None:
        self.height, self.width = h, w
        for name in sorted(self.visual):
            width = 2 * w + outputs.SBS_GAP_PX if name == "sbs" else w
            tmp = self.atomic.temp_for(self.paths[name])
            self.writers[name] = _open_writer(tmp, width, h, self.fps, backend=self.backend)
        if self.raw:
            self.npy = _NpyAppender(self.atomic.temp_for(self.paths["npy"]), h, w)

    def write(self, i: int, frame: np.ndarray, values: np.ndarray) -> None:
        if self.width is None:
            self._open(*frame.shape[:2])
        if frame.shape[:2] != (self.height, self.width):
            raise VideoReadError(
                f"{self.source}: frame {i} is {frame.shape[1]}x{frame.shape[0]}, expected {self.width}x{self.height} "
                "(the frame size changes within the clip)"
            )
        if self.npy is not None:
            self.npy.write(values)
        if self.stabilize:
            self.stabilizer = self.stabilizer or TemporalStabilizer(self.kind)  # type: ignore[arg-type]
            values, a, b = self.stabilizer(values)
            self.scales.append(a)
            self.shifts.append(b)
        if "color" in self.writers or "sbs" in self.writers:
            color = outputs.colorize(values, self.colormap, *self.display)
            if "color" in self.writers:
                self.writers["color"].write(color)
            if "sbs" in self.writers:
                self.writers["sbs"].write(_sbs(frame, color))
        if "gray" in self.writers:
            gray = outputs.to_gray8(values, *self.display)
            self.writers["gray"].write(np.repeat(gray[..., None], 3, axis=2))

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        if self.npy is not None:
            self.npy.close()


def process_video(
    predictor: Any,
    src: str | os.PathLike,
    out_dir: str | os.PathLike,
    stem: str,
    *,
    formats: set[str] | frozenset[str] = frozenset({"color"}),
    colormap: str = "Spectral_r",
    stabilize: bool = False,
    batch_size: int = 1,
    range_samples: int = 24,
    backend: Literal["auto", "pyav", "opencv"] = "auto",
    progress: Callable[[int, int | None], None] | None = None,
) -> dict[str, Any]:
    """Predict depth for every frame of a video file and write the requested outputs (module docstring).

    Args:
        predictor: a :class:`~depth_anything_v2.inference.predictor.DepthPredictor` (anything with ``predict_iter``).
        src: the video file.
        out_dir: output folder (created if needed).
        stem: output file stem, e.g. ``"clip"`` -> ``out_dir/clip_depth.mp4``.
        formats: any of ``color``, ``sbs``, ``gray``, ``npy`` (alias ``raw``); other names are ignored.
        colormap: colormap name for ``color``/``sbs`` (``outputs.get_colormap``).
        stabilize: temporal stabilisation of scale/shift for the visualisation.
        batch_size: frames per forward pass.
        range_samples: frames predicted in the first pass to fix the display range.
        backend: ``"auto"`` (PyAV if installed), ``"pyav"`` or ``"opencv"``.
        progress: called as ``progress(frames_done, frames_expected_or_None)`` after each frame.

    Returns:
        A summary dict: ``source``, ``frames``, ``fps`` (float), ``fps_rational`` (``"30000/1001"``),
        ``width``, ``height``, ``duration_s``, ``seconds`` (wall time), ``outputs`` (format -> path),
        ``display_range``, ``kind``, ``stabilized``, ``stabilizer_resets``, ``backend``, ``ignored_formats``.

    Raises:
        VideoReadError: the file is missing, empty, not a video, or has no decodable frame.
    """
    t_start = time.perf_counter()
    src, out_dir = Path(src), Path(out_dir)
    if batch_size < 1:
        raise ValueError(f"expected batch_size >= 1, got {batch_size}")
    if range_samples < 1:
        raise ValueError(f"expected range_samples >= 1, got {range_samples}")
    outputs.get_colormap(colormap)  # fail fast on an unknown colormap
    wanted = _video_formats(formats)
    ignored = sorted({_FORMAT_ALIASES.get(f, f) for f in formats} - set(VIDEO_FORMATS))
    if ignored:
        log.info("%s: formats %s do not apply to videos; writing %s", src, ignored, sorted(wanted))
    paths = video_output_paths(out_dir, stem, wanted)
    visual = wanted & {"color", "sbs", "gray"}
    info = _probe(src, backend)

    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(tempfile.mkdtemp(prefix=f".{stem}.range.", dir=out_dir))
    atomic = _AtomicOutputs(out_dir)
    try:
        kind, max_depth, cached, display = "disparity", None, {}, (0.0, 0.0)
        if visual:
            kind, max_depth, cached, display = _sample_display_range(
                predictor, src, backend, info, cache_dir, batch_size, range_samples, stabilize
            )
        clip = _ClipWriter(
            paths, visual, "npy" in wanted, atomic, info.fps, info.backend, colormap, display, stabilize, src
        )
        n, kind, max_depth = _write_frames(
            predictor, clip, backend, info, cached, batch_size, kind, max_depth, progress
        )
        summary = _summary(clip, n, kind, max_depth, ignored)
        if "npy" in wanted:
            _write_metadata(clip, summary)
        atomic.commit()
    except BaseException:
        atomic.abort()
        raise
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    summary["seconds"] = time.perf_counter() - t_start
    log.info("%s: %d frames in %.1f s", src, n, summary["seconds"])
    return summary


def _probe(src: Path, backend: Literal["auto", "pyav", "opencv"]) -> VideoInfo:
    """What the container says about the clip (size, rate, frame count), logged."""
    reader = open_video(src, backend=backend)
    info = reader.info
    reader.close()
    log.info(
        "%s: %dx%d, %s fps, ~%s frames (%s)", src, info.width, info.height, info.fps, info.frame_count, info.backend
    )
    return info


def _sample_display_range(
    predictor: Any,
    src: Path,
    backend: Literal["auto", "pyav", "opencv"],
    info: VideoInfo,
    cache_dir: Path,
    batch_size: int,
    range_samples: int,
    stabilize: bool,
) -> tuple[str, float | None, dict[int, Path], tuple[float, float]]:
    """Pass 1: ``(kind, max_depth, cached predictions, display range)`` from evenly spread sample frames."""
    n_hint = info.frame_count or range_samples
    sample = set(np.unique(np.linspace(0, n_hint - 1, min(range_samples, n_hint)).round().astype(int)).tolist())
    last = max(sample)
    kind, max_depth = "disparity", None
    cached: dict[int, Path] = {}
    pooled: list[np.ndarray] = []
    stab = None
    rng = np.random.default_rng(0)
    reader = open_video(src, backend=backend)
    decoded = Background(
        _take_until(((i, f) for i, f in enumerate(reader.frames()) if i in sample), last),
        2 * batch_size + 2,
        "video-decode",
    )
    try:
        for i, _f, result in _predict_stream(predictor, iter(decoded), batch_size):
            values, kind, max_depth = _depth_of(result)
            cached[i] = cache_dir / f"{i}.npy"
            np.save(cached[i], values)
            if stabilize:
                stab = stab or TemporalStabilizer(kind)  # type: ignore[arg-type]
                values = stab(values)[0]
            pooled.append(_range_values(values, rng))
    finally:
        decoded.close()
        reader.close()
    if not cached:
        raise VideoReadError(f"{src}: no decodable frame")
    display = _display_range(np.concatenate(pooled), kind)
    log.info("%s: display range %.6g .. %.6g from %d sampled frames", src, *display, len(cached))
    return kind, max_depth, cached, display


def _write_frames(
    predictor: Any,
    clip: _ClipWriter,
    backend: Literal["auto", "pyav", "opencv"],
    info: VideoInfo,
    cached: dict[int, Path],
    batch_size: int,
    kind: str,
    max_depth: float | None,
    progress: Callable[[int, int | None], None] | None,
) -> tuple[int, str, float | None]:
    """Pass 2: every frame in order (decoded, predicted, written in three threads): ``(n, kind, max_depth)``."""
    reader = open_video(clip.source, backend=backend)
    decoded = Background(enumerate(reader.frames()), 2 * batch_size + 2, "video-decode")
    sink = _Sink(4, "video-write")
    n = 0
    try:
        for i, frame, result in _predict_stream(predictor, iter(decoded), batch_size, cached):
            values, kind_i, max_depth_i = _depth_of(result)
            if kind_i:
                kind, max_depth = kind_i, max_depth_i
            clip.kind = kind
            sink.submit(functools.partial(clip.write, i, frame, values))
            n = i + 1
            if progress is not None:
                progress(n, info.frame_count)
        sink.close()
    finally:
        decoded.close()
        sink.close(raise_error=False)
        reader.close()
        clip.close()
    if n == 0:
        raise VideoReadError(f"{clip.source}: no decodable frame")
    if info.frame_count and info.frame_count != n:
        log.info("%s: container claimed %d frames, decoded %d", clip.source, info.frame_count, n)
    return n, kind, max_depth


def _summary(clip: _ClipWriter, n: int, kind: str, max_depth: float | None, ignored: list[str]) -> dict[str, Any]:
    """The summary :func:`process_video` returns, but for the wall time."""
    stab = clip.stabilizer
    return {
        "source": str(clip.source),
        "frames": n,
        "fps": float(clip.fps),
        "fps_rational": f"{clip.fps.numerator}/{clip.fps.denominator}",
        "width": clip.width,
        "height": clip.height,
        "duration_s": float(n / clip.fps),
        "kind": kind,
        "unit": "m" if kind == "metric" else None,
        "max_depth": max_depth,
        "display_range": list(clip.display) if clip.visual else None,
        "colormap": clip.colormap,
        "stabilized": bool(clip.stabilize),
        "stabilizer_resets": stab.resets if stab is not None else 0,
        "backend": clip.backend,
        "ignored_formats": ignored,
        "outputs": {name: str(p) for name, p in clip.paths.items()},
    }


def _write_metadata(clip: _ClipWriter, summary: dict[str, Any]) -> None:
    """``<stem>_depth.json`` next to the ``.npy``: shape, rate, kind, display range and stabilisation."""
    meta = {
        "format": "depth_anything_v2.video_depth/1",
        "npy": clip.paths["npy"].name,
        "shape": [summary["frames"], clip.height, clip.width],
        "dtype": "float32",
        **{k: summary[k] for k in ("source", "frames", "fps_rational", "kind", "unit", "max_depth")},
        "display_range": summary["display_range"],
        "colormap": clip.colormap,
        "stabilized": bool(clip.stabilize),
    }
    if clip.stabilize:
        meta["stabilization"] = {"scale": clip.scales, "shift": clip.shifts, "note": "stabilised = scale * raw + shift"}
    json_tmp = clip.atomic.temp_for(clip.paths["json"])
    json_tmp.write_text(json.dumps(meta, indent=1) + "\n")


def _take_until(items: Iterator[tuple[int, np.ndarray]], last: int) -> Iterator[tuple[int, np.ndarray]]:
    """Stop decoding after frame ``last`` (the pass-1 filter alone would decode to the end)."""
    for i, f in items:
        yield i, f
        if i >= last:
            return


# --------------------------------------------------------------------------------------------------------
# Cameras and streams


def _check_display() -> None:
    import cv2

    try:
        cv2.namedWindow("depth-anything", cv2.WINDOW_NORMAL)
    except cv2.error as e:
        raise DisplayUnavailableError(
            "cannot open a window: this OpenCV has no GUI support or there is no display "
            "(install opencv-python instead of opencv-python-headless, or use --out to write a file)"
            f" [{str(e).strip().splitlines()[-1] if str(e).strip() else e}]"
        ) from None


def run_stream(
    predictor: Any,
    source: str,
    *,
    out: str | os.PathLike | None = None,
    show: bool = True,
    colormap: str = "Spectral_r",
    max_frames: int | None = None,
    stabilize: bool = False,
    sbs: bool = False,
    range_momentum: float = 0.1,
) -> dict[str, Any]:
    """Live depth from a webcam index, ``/dev/videoN``, stream URL (or a video file, e.g. for testing).

    Args:
        predictor: a ``DepthPredictor``.
        source: ``"0"`` (webcam index), a device, a URL, or a file path.
        out: optional output ``.mp4`` of the colourised depth (written atomically when the stream ends).
        show: show input | depth with an FPS readout in a window; ``q`` or Esc ends.
        colormap: colormap name.
        max_frames: stop after this many frames.
        stabilize: temporal stabilisation (:class:`TemporalStabilizer`).
        sbs: write input | gap | depth to ``out`` instead of the depth alone.
        range_momentum: how fast the display range follows the stream.

    Returns:
        ``{"source", "frames", "seconds", "fps" (processing rate), "output" (path or None), "stopped_by"}``
        where ``stopped_by`` is ``"end"``, ``"max_frames"``, ``"key"`` or ``"interrupt"``.

    Raises:
        VideoReadError: the camera/stream cannot be opened or gives no frame.
        DisplayUnavailableError: ``show`` without a usable window system.
    """
    import cv2

    if max_frames is not None and max_frames < 1:
        raise ValueError(f"expected max_frames >= 1 or None, got {max_frames}")
    outputs.get_colormap(colormap)
    live = is_stream_source(source)
    if show:
        _check_display()
    reader = _OpenCVReader(source, live=live)
    out_path = Path(out) if out is not None else None
    recording: _Recording | None = None
    t_start = time.perf_counter()
    try:
        if out_path is not None:
            recording = _Recording(out_path, reader.info.fps, sbs=sbs, live=live)
        depth = _colored_depth(predictor, reader.frames(), colormap, stabilize, range_momentum)
        n, stopped_by = _play(depth, recording, show, max_frames, t_start)
        if n == 0:
            raise VideoReadError(f"{source}: no frame received")
        if recording is not None:
            recording.commit()
    except BaseException:
        if recording is not None:
            recording.abort()
        raise
    finally:
        reader.close()
        if show:
            cv2.destroyAllWindows()
    seconds = time.perf_counter() - t_start
    return {
        "source": str(source),
        "frames": n,
        "seconds": seconds,
        "fps": n / seconds if seconds > 0 else 0.0,
        "output": str(out_path) if out_path is not None else None,
        "stopped_by": stopped_by,
    }


def _colored_depth(
    predictor: Any, frames: Iterator[np.ndarray], colormap: str, stabilize: bool, momentum: float
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(frame_rgb, colourised depth)`` per frame, in a display range that follows the stream (an EMA)."""
    stab = None
    lo = hi = None
    for frame in frames:
        result = predictor.predict(frame, channel_order="rgb")
        values = np.asarray(result.prediction, np.float32)
        if stabilize:
            stab = stab or TemporalStabilizer(result.kind)
            values = stab(values)[0]
        p_lo, p_hi = (float(v) for v in np.nanpercentile(values, (2, 98)))
        lo = p_lo if lo is None else (1 - momentum) * lo + momentum * p_lo
        hi = p_hi if hi is None else (1 - momentum) * hi + momentum * p_hi
        vmin, vmax = (hi, lo) if result.kind == "metric" else (lo, hi)
        yield frame, outputs.colorize(values, colormap, vmin, vmax)


def _play(
    depth: Iterator[tuple[np.ndarray, np.ndarray]],
    recording: _Recording | None,
    show: bool,
    max_frames: int | None,
    t_prev: float,
) -> tuple[int, str]:
    """Record and show each frame until the stream ends, a key, ``max_frames`` or Ctrl-C: ``(frames, why)``."""
    n, fps = 0, 0.0
    try:
        for frame, color in depth:
            if recording is not None:
                recording.write(frame, color)
            n += 1
            now = time.perf_counter()
            inst = 1.0 / max(now - t_prev, 1e-6)
            fps = inst if n == 1 else 0.9 * fps + 0.1 * inst
            t_prev = now
            if show and _show(frame, color, fps):
                return n, "key"
            if max_frames is not None and n >= max_frames:
                return n, "max_frames"
    except KeyboardInterrupt:
        return n, "interrupt"
    return n, "end"


def _show(frame_rgb: np.ndarray, color_rgb: np.ndarray, fps: float) -> bool:
    """Show input | depth with the FPS readout in the window; True when ``q`` or Esc was pressed."""
    import cv2

    view = np.ascontiguousarray(_sbs(frame_rgb, color_rgb)[..., ::-1])
    for bgr, thickness in (((0, 0, 0), 4), ((255, 255, 255), 2)):  # white text on a black outline
        cv2.putText(view, f"{fps:5.1f} FPS", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, bgr, thickness)
    cv2.imshow("depth-anything", view)
    return cv2.waitKey(1) & 0xFF in (ord("q"), 27)


class _Recording:
    """The ``out`` file of :func:`run_stream`: opened at the first frame, moved into place by :meth:`commit`."""

    def __init__(self, path: Path, fps: Fraction, *, sbs: bool, live: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.fps, self.sbs = path, fps, sbs
        self.backend = "pyav" if _have_pyav() else "opencv"
        self.timestamps = "wallclock" if live and self.backend == "pyav" else "rate"
        self.atomic = _AtomicOutputs(path.parent)
        self.writer: Any = None

    def write(self, frame_rgb: np.ndarray, color_rgb: np.ndarray) -> None:
        if self.writer is None:
            h, w = frame_rgb.shape[:2]
            width = 2 * w + outputs.SBS_GAP_PX if self.sbs else w
            tmp = self.atomic.temp_for(self.path)
            self.writer = _open_writer(tmp, width, h, self.fps, backend=self.backend, timestamps=self.timestamps)
        self.writer.write(_sbs(frame_rgb, color_rgb) if self.sbs else color_rgb)

    def commit(self) -> None:
        self._close_writer()
        self.atomic.commit()

    def abort(self) -> None:
        self._close_writer()
        self.atomic.abort()

    def _close_writer(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
