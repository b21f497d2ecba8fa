"""Run a frame source through the model (and fusion, readouts) and write the outputs: live and replay alike.

:func:`run_source` is the only loop: a :class:`~depth_anything_v2.oak.sources.RecordingSource` and a live
:class:`~depth_anything_v2.oak.sources.OakSource` both go through it, frame by frame:

1. depth from the model on the host (``DepthPredictor``), or from the network on the camera (``--on-device``);
2. with ``fuse``, fusion with the frame's stereo depth (:mod:`depth_anything_v2.oak.fusion`) -> metres;
3. readouts of the boxes (:mod:`depth_anything_v2.oak.spatial`) on the metric depth;
4. outputs under ``out``: ``<name><suffix>`` per format (the predict formats, written by
   :func:`depth_anything_v2.io.outputs.write_depth_outputs`; ``ply`` uses the camera's intrinsics),
   ``fusion.jsonl`` (the fit of every frame) and ``readouts.jsonl`` (one line per frame), and the window with
   ``show``.

A frame that cannot be read or processed is reported and skipped; the others go on (the report lists them).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..io.outputs import FORMATS, colorize, display_range, write_depth_outputs
from .fusion import FusionConfig, StereoFusion
from .recording import FrameError
from .sources import Frame, FrameSource
from .spatial import RoiError, RoiSpec, roi_xyz

__all__ = ["OakRunOptions", "OakRunReport", "run_source"]

log = logging.getLogger(__name__)


@dataclass
class OakRunOptions:
    """What :func:`run_source` does. ``fuse``: ``None`` (model only), ``"fill"`` or ``"replace"``."""

    out: Path | None = None
    formats: tuple[str, ...] = ("png16", "color")
    fuse: str | None = None
    fusion: FusionConfig = field(default_factory=FusionConfig)
    rois: RoiSpec | None = None
    show: bool = False
    colormap: str = "Spectral_r"
    max_frames: int | None = None


@dataclass
class OakRunReport:
    """``frames`` done, ``failed`` ``[(frame, reason)]``, ``fallbacks`` (frames on the last good fit),
    ``readout_errors`` ``[(frame, reason)]``, ``seconds``, ``fps``, ``stopped_by`` (end, max_frames, key,
    interrupt)."""

    source: str
    frames: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    fallbacks: int = 0
    readout_errors: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    fps: float = 0.0
    stopped_by: str = "end"

    @property
    def ok(self) -> bool:
        return not self.failed and not self.readout_errors


def check_options(source: FrameSource, options: OakRunOptions, is_metric: bool) -> None:
    """Refuse impossible combinations before the first frame (``ValueError`` naming the fix)."""
    unknown = sorted(set(options.formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"expected formats from {sorted(FORMATS)}, got {unknown}")
    if options.fuse is not None and not source.has_stereo:
        raise ValueError(f"--fuse needs stereo depth, but {source.description} has none (use --stereo)")
    metric = is_metric or options.fuse is not None
    if "ply" in options.formats and not metric:
        raise ValueError("ply needs metric depth: use --fuse with stereo or a metric model")
    if options.rois is not None and not metric:
        raise ValueError("--roi needs metric depth: use --fuse with stereo or a metric model")


def _model_depth(frame: Frame, predictor: Any) -> tuple[np.ndarray, str]:
    if frame.network_output is not None:  # the network ran on the camera at the archive's size
        import cv2

        h, w = frame.image_rgb.shape[:2]
        return cv2.resize(frame.network_output, (w, h), interpolation=cv2.INTER_LINEAR), "disparity"
    result = predictor.predict(frame.image_rgb)
    return result.prediction, result.kind


def run_source(source: FrameSource, predictor: Any, options: OakRunOptions) -> OakRunReport:
    """Process every frame of ``source`` (see the module docstring); returns an :class:`OakRunReport`.

    ``predictor``: a ``DepthPredictor`` (or ``None`` when the network runs on the camera).
    """
    check_options(source, options, bool(predictor is not None and predictor.is_metric))
    report = OakRunReport(source.description)
    fusion = StereoFusion(options.fusion if options.fuse is None else _with_mode(options))
    logs: dict[str, IO[str]] = {}
    if options.out is not None:
        options.out.mkdir(parents=True, exist_ok=True)
        if options.fuse is not None:
            logs["fusion"] = open(options.out / "fusion.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        if options.rois is not None:
            logs["readouts"] = open(options.out / "readouts.jsonl", "w", encoding="utf-8")  # noqa: SIM115
    window = _Window(options.colormap) if options.show else None
    start = time.perf_counter()
    try:
        for item in source.frames():
            if isinstance(item, FrameError):
                log.error("%s", item)
                report.failed.append((item.name, str(item)))
                continue
            try:
                stopped = _process(item, predictor, fusion, options, logs, report, window)
            except (ValueError, OSError) as e:
                log.error("frame %s: %s", item.name, e)
                report.failed.append((item.name, str(e)))
                continue
            report.frames += 1
            if stopped:
                report.stopped_by = "key"
                break
            if options.max_frames is not None and report.frames >= options.max_frames:
                report.stopped_by = "max_frames"
                break
    except KeyboardInterrupt:
        report.stopped_by = "interrupt"
    finally:
        for f in logs.values():
            f.close()
        if window is not None:
            window.close()
    report.seconds = time.perf_counter() - start
    report.fps = report.frames / report.seconds if report.seconds > 0 else 0.0
    return report


def _with_mode(options: OakRunOptions) -> FusionConfig:
    from dataclasses import replace

    return replace(options.fusion, mode=options.fuse)


def _process(frame, predictor, fusion, options, logs, report, window) -> bool:
    model_depth, kind = _model_depth(frame, predictor)
    depth, out_kind = model_depth, kind
    fit = None
    if options.fuse is not None:
        if frame.stereo_depth_mm is None:
            raise ValueError("no stereo depth in this frame")
        disparity = 1.0 / model_depth if kind == "metric" else model_depth
        fused = fusion.fuse(disparity, frame.stereo_depth_mm)
        depth, out_kind, fit = fused.depth_m, "metric", fused.fit
        report.fallbacks += fit.status in ("fallback", "failed")
        _log_line(logs.get("fusion"), frame, fit.to_dict())
    readings = []
    if options.rois is not None:
        errors = []
        for roi in options.rois.boxes(frame.name):
            try:
                readings.append(roi_xyz(depth, roi, frame.intrinsics))
            except RoiError as e:
                errors.append(str(e))
                report.readout_errors.append((frame.name, str(e)))
                log.error("frame %s: %s", frame.name, e)
        _log_line(logs.get("readouts"), frame, {"readouts": [r.to_dict() for r in readings], "errors": errors})
    if options.out is not None:
        paths = {fmt: options.out / f"{frame.name}{FORMATS[fmt]}" for fmt in options.formats}
        write_depth_outputs(
            paths,
            depth,
            out_kind,
            image_rgb=frame.image_rgb,
            colormap=options.colormap,
            intrinsics=frame.intrinsics,
        )
    if window is not None:
        return window.show(frame, model_depth, kind, depth if fit is not None else None, readings)
    return False


def _log_line(f: IO[str] | None, frame: Frame, record: dict) -> None:
    if f is not None:
        f.write(json.dumps({"frame": frame.name, "timestamp_s": frame.timestamp_s, **record}) + "\n")
        f.flush()


class _Window:
    """input | model depth | fused depth, with FPS and the readouts; ``q`` or Esc stops."""

    def __init__(self, colormap: str) -> None:
        from ..inference.video import _check_display

        _check_display()
        self.colormap = colormap
        self.t_prev = time.perf_counter()
        self.fps = 0.0

    def show(self, frame: Frame, model_depth, kind: str, fused, readings) -> bool:
        import cv2

        panels = [frame.image_rgb, colorize(model_depth, self.colormap, *display_range(model_depth, kind))]
        if fused is not None:
            panels.append(colorize(fused, self.colormap, *display_range(fused, "metric")))
        view = np.ascontiguousarray(np.concatenate(panels, axis=1)[..., ::-1])
        for r in readings:
            x, y, w, h = (int(v) for v in r.roi.split(","))
            cv2.rectangle(view, (x, y), (x + w - 1, y + h - 1), (255, 255, 255), 1)
            label = f"X {r.x_mm:.0f} Y {r.y_mm:.0f} Z {r.z_mm:.0f} mm"
            cv2.putText(view, label, (x, max(y - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
        now = time.perf_counter()
        inst = 1.0 / max(now - self.t_prev, 1e-6)
        self.fps, self.t_prev = (inst if self.fps == 0 else 0.9 * self.fps + 0.1 * inst), now
        cv2.putText(view, f"{self.fps:5.1f} FPS", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        cv2.imshow("depth-anything", view)
        return (cv2.waitKey(1) & 0xFF) in (ord("q"), 27)

    def close(self) -> None:
        import cv2

        cv2.destroyAllWindows()
