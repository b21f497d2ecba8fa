"""The folder pipeline: depth for images, folders, lists, globs, videos and streams, written under one folder.

    from depth_anything_v2 import DepthPredictor
    from depth_anything_v2.inference.pipeline import PipelineOptions, predict_to_folder

    predictor = DepthPredictor.from_pretrained("vits")
    report = predict_to_folder(predictor, ["photos/", "clip.mp4"], "depth/", PipelineOptions(formats=("npy",)))
    report.done, report.failures          # 2, [] ; failures are (source, reason) pairs

Images overlap three stages so the model does not wait on I/O: a thread pool decodes ahead of the model (bounded
window, :func:`~depth_anything_v2.inference.prefetch.prefetch_map`), the calling thread runs the predictor (which
batches images of one working size), and a writer pool encodes and writes outputs (bounded). Memory stays bounded
by the windows, whatever the number of inputs. A failing input (unreadable, too large, a failed write) is recorded
in the report and the run goes on; every file is written atomically, so ``skip_existing`` resumes a killed run.
Videos stream frame by frame; cameras and streams run live (:mod:`~depth_anything_v2.inference.video`).

Use :func:`plan` + :func:`run` to inspect the work before loading a model (the CLI does), or
:func:`predict_to_folder` for both.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_write
from ..io.inputs import ExpandedInputs, InputError, InputItem, expand_inputs
from .predictor import batches_by_size
from .prefetch import prefetch_map
from .tiling import Tiling

logger = logging.getLogger(__name__)

DEFAULT_FORMATS = ("png16", "color")
#: Images whose longer side is more than this many times the shorter are refused by default: the model sees the
#: shorter side at the input size, so a 100000 x 500 panorama would run at 518 x 103600 (274k tokens).
DEFAULT_MAX_ASPECT = 16.0


class PipelineError(ValueError):
    """The run cannot start as asked (bad options, outputs that would overwrite inputs, no usable output folder).

    ``option`` names the offending option (``"max_side"``), or is ``None``.
    """

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(f"{option}: {message}" if option else message)
        self.option = option
        self.detail = message


@dataclass(frozen=True)
class PipelineOptions:
    """What to write and how to read. Defaults are the CLI's.

    Attributes:
        formats: output formats (``io.outputs.FORMATS``): npy, png16, color, gray, sbs, pfm, ply.
        colormap: colormap of color/sbs outputs.
        skip_existing: skip inputs whose requested outputs all exist (resumes a killed run).
        max_pixels: refuse larger images (pixels; ``None``: no limit).
        max_side: downscale images whose longer side is larger (outputs are at the reduced size).
        max_aspect: refuse images more elongated than this.
        workers: decoding threads (writers: ``workers // 2 + 1``).
        batch_size: images per forward pass (among images of one working size).
        intrinsics: point-cloud intrinsics: any of ``fx, fy, cx, cy`` (pixels) or ``fov_deg``; empty: EXIF or 60°.
        remove_edges: drop flying pixels at depth edges in point clouds.
        align_to: known depths (file, or a folder of ``<stem>.<ext>``) that turn relative output into metres.
        stabilize: stabilise the scale/shift of video frames over time (visualisation only).
        show: show camera/stream depth in a window.
        max_frames: stop streams after this many frames.
        progress: show tqdm progress bars (only on a terminal).
        tiling: tiled high-resolution inference for images (:mod:`~depth_anything_v2.inference.tiling`): images
            go one at a time, their tiles ``batch_size`` at a time, and ``<stem>_tiling.json`` records the plan.
    """

    formats: Sequence[str] = DEFAULT_FORMATS
    colormap: str = "Spectral_r"
    skip_existing: bool = False
    max_pixels: int | None = 100_000_000
    max_side: int | None = None
    max_aspect: float = DEFAULT_MAX_ASPECT
    workers: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    batch_size: int = 1
    intrinsics: dict[str, float] = field(default_factory=dict)
    remove_edges: bool = True
    align_to: Path | None = None
    stabilize: bool = False
    show: bool = False
    max_frames: int | None = None
    progress: bool = True
    tiling: Tiling | None = None

    def __post_init__(self) -> None:
        from ..io.outputs import FORMATS, get_colormap

        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise PipelineError(
                f"expected a non-empty list of {', '.join(FORMATS)}, got {list(self.formats)}", "format"
            )
        try:
            get_colormap(self.colormap)
        except ValueError as e:
            raise PipelineError(str(e), "colormap") from None
        for name in ("batch_size", "workers", "max_side", "max_frames"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise PipelineError(f"expected >= 1, got {value}", name)
        if self.max_pixels is not None and self.max_pixels <= 0:
            raise PipelineError(f"expected > 0, got {self.max_pixels}", "max_pixels")
        if self.max_aspect < 1:
            raise PipelineError(f"expected >= 1, got {self.max_aspect}", "max_aspect")
        if self.align_to is not None and not Path(self.align_to).exists():
            raise PipelineError(f"{self.align_to}: no such file or folder", "align_to")


@dataclass
class Report:
    """The outcome of a run: counts, failures as ``(source, reason)``, stream summaries, the time taken."""

    done: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)  # one line per live stream: frames, rate, output
    on_failure: Callable[[str, str], None] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fail(self, source: str, reason: str) -> None:
        """Record that ``source`` failed (``reason`` may repeat the source as its prefix) and tell ``on_failure``."""
        reason = reason.removeprefix(f"{source}: ")
        with self._lock:
            self.failures.append((source, reason))
        if self.on_failure is not None:
            self.on_failure(source, reason)
        else:
            logger.warning("failed: %s: %s", source, reason)

    def ok(self) -> None:
        with self._lock:
            self.done += 1


@dataclass
class Plan:
    """The work of a run, known before any model is loaded."""

    out: Path | None
    images: list[InputItem]
    videos: list[InputItem]
    streams: list[InputItem]
    failures: list[tuple[str, str]]  # inputs that could not be expanded (missing files, bad list lines)
    skipped: int = 0

    @property
    def has_work(self) -> bool:
        return bool(self.images or self.videos or self.streams)


# ----------------------------------------------------------------------------------------------------------------
# Planning


def plan(inputs: Sequence[str | os.PathLike], out: str | os.PathLike | None, options: PipelineOptions) -> Plan:
    """Expand ``inputs`` (files, folders, ``.txt`` lists, globs, videos, streams), check that no output would
    overwrite an input, and drop inputs whose outputs exist when ``options.skip_existing``.

    Raises:
        PipelineError: nothing to do, ``out`` missing where needed, or outputs that would overwrite inputs.
    """
    specs = [os.fspath(s) for s in inputs]
    out_path = None if out is None else Path(out)
    try:
        expanded = expand_inputs(specs, exclude=[out_path] if out_path is not None else [])
    except InputError as e:
        raise PipelineError(str(e)) from None
    files = [i for i in expanded.items if i.kind != "stream"]
    streams = [i for i in expanded.items if i.kind == "stream"]
    if not expanded.items and not expanded.failures:
        raise PipelineError("no images, videos or streams found in the inputs")
    if out_path is None and (files or not options.show):
        raise PipelineError("required (only camera/stream inputs shown live can do without it)", "out")
    if out_path is not None:
        _check_no_overwrite(expanded, specs, out_path, options)
    result = Plan(
        out=out_path,
        images=[i for i in files if i.kind == "image"],
        videos=[i for i in files if i.kind == "video"],
        streams=streams,
        failures=[(f.source, f.reason) for f in expanded.failures],
    )
    if options.skip_existing and out_path is not None:
        images = [i for i in result.images if not _outputs_exist(i, out_path, options)]
        videos = [i for i in result.videos if not _video_outputs_exist(i, out_path, options)]
        result.skipped = len(result.images) - len(images) + len(result.videos) - len(videos)
        result.images, result.videos = images, videos
    return result


def _check_no_overwrite(expanded: ExpandedInputs, specs: list[str], out: Path, options: PipelineOptions) -> None:
    out_abs = Path(os.path.abspath(out))
    if expanded.base is not None and any(Path(os.path.abspath(s)) == out_abs for s in specs):
        raise PipelineError(f"output folder {out} is also an input folder: outputs would be read as inputs next time")
    files = [i for i in expanded.items if i.kind != "stream"]
    sources = {os.path.abspath(i.source) for i in files}
    for item in files:
        for path in item.output_paths(out, options.formats).values():
            if os.path.abspath(path) in sources:
                raise PipelineError(f"output {path} would overwrite the input of the same name")


def _outputs_exist(item: InputItem, out: Path, options: PipelineOptions) -> bool:
    paths = list(item.output_paths(out, options.formats).values())
    if options.align_to is not None:
        paths.append(item.output_path(out, "_align.json"))
    if options.tiling is not None:
        paths.append(item.output_path(out, "_tiling.json"))
    return all(p.is_file() for p in paths)


def _video_outputs_exist(item: InputItem, out: Path, options: PipelineOptions) -> bool:
    from .video import video_output_paths

    out_path = item.output_path(out, "")
    return all(p.is_file() for p in video_output_paths(out_path.parent, out_path.name, set(options.formats)).values())


# ----------------------------------------------------------------------------------------------------------------
# Running


def predict_to_folder(
    predictor: Any,
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike | None,
    options: PipelineOptions | None = None,
    *,
    on_failure: Callable[[str, str], None] | None = None,
) -> Report:
    """:func:`plan` then :func:`run`: every input's depth under ``out``; returns the :class:`Report`."""
    options = options or PipelineOptions()
    return run(predictor, plan(inputs, out, options), options, on_failure=on_failure)


def run(
    predictor: Any, work: Plan, options: PipelineOptions, *, on_failure: Callable[[str, str], None] | None = None
) -> Report:
    """Run the planned work with ``predictor`` (a ``DepthPredictor``); failures go to the report, not raised.

    Raises:
        PipelineError: ``ply`` output from a relative model without ``align_to``; an output folder that cannot be
            created.
    """
    if "ply" in options.formats and not predictor.is_metric and options.align_to is None:
        raise PipelineError("ply needs metric depth: use a metric model, or align_to known depths", "format")
    report = Report(skipped=work.skipped, on_failure=on_failure)
    for source, reason in work.failures:
        report.fail(source, reason)
    if work.out is not None and (work.images or work.videos or work.streams):
        try:
            work.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PipelineError(f"{work.out}: cannot create the output folder ({e.strerror or e})", "out") from None
    if work.videos:
        _warn_image_only_options(options, len(work.videos))
    started = time.perf_counter()
    if work.images:
        assert work.out is not None
        with _progress(options.progress, total=len(work.images), unit="img") as bar:
            run_images(predictor, work.images, work.out, options, report, bar)
    for item in work.videos:
        assert work.out is not None
        _run_video(predictor, item, work.out, options, report)
    for item in work.streams:
        _run_stream(predictor, item, work.out, options, report)
    report.elapsed_s = time.perf_counter() - started
    return report


def _warn_image_only_options(options: PipelineOptions, n_videos: int) -> None:
    from .video import VIDEO_FORMATS

    image_only = [f for f in options.formats if f not in VIDEO_FORMATS]
    image_only += ["align_to"] if options.align_to is not None else []
    image_only += ["tiling"] if options.tiling is not None else []
    if image_only:
        logger.warning(
            "%s: for images only, not applied to the %d video(s); videos get %s",
            ", ".join(image_only), n_videos, ", ".join(f for f in VIDEO_FORMATS if f in options.formats) or "color",
        )  # fmt: skip


class _progress:
    """A tqdm bar on stderr when enabled and stderr is a terminal (``disable=None``), else a no-op."""

    def __init__(self, enabled: bool, **kwargs: Any) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(disable=None, dynamic_ncols=True, file=sys.stderr, **kwargs)

    def __enter__(self) -> Any:
        return self.bar

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------------------------------------------
# Images: decode -> infer -> write


@dataclass
class _Decoded:
    item: InputItem
    image_rgb: np.ndarray


def _decode(item: InputItem, options: PipelineOptions, input_size: int) -> _Decoded:
    from ..io.images import read_image
    from .transforms import working_size

    image_rgb = read_image(item.source, max_pixels=options.max_pixels, max_side=options.max_side)
    height, width = image_rgb.shape[:2]
    aspect = max(height, width) / min(height, width)
    if aspect > options.max_aspect:
        size = working_size(height, width, input_size)
        raise ValueError(
            f"extreme aspect ratio {aspect:.1f}:1 ({width}x{height}): the model would run at "
            f"{size[1]}x{size[0]}; limit {options.max_aspect:g}:1 (max_aspect), or crop the image"
        )
    return _Decoded(item, image_rgb)


def run_images(
    predictor: Any, items: list[InputItem], out: Path, options: PipelineOptions, report: Report, bar: Any = None
) -> None:
    """Decode -> infer -> write with overlap; failures are recorded in ``report``, ``bar`` advances per image."""

    def advance() -> None:
        if bar is not None:
            bar.update(1)

    def decoded() -> Iterator[tuple[_Decoded, np.ndarray]]:
        window = max(2 * options.workers, 2 * options.batch_size)
        loaded = prefetch_map(
            lambda item: _decode(item, options, predictor.input_size),
            items,
            workers=options.workers,
            ahead=window,
            catch=(ValueError, OSError, MemoryError),  # ImageReadError is a ValueError
        )
        for item, d in loaded:
            if isinstance(d, BaseException):
                report.fail(item.source, str(d))
                advance()
            else:
                yield d, d.image_rgb

    writer_slots = threading.BoundedSemaphore(max(2, options.workers) + options.batch_size)
    with ThreadPoolExecutor(max(1, options.workers // 2 + 1), thread_name_prefix="write") as writers:
        try:
            for d, result in _predict_robustly(predictor, decoded(), options, report, advance):
                writer_slots.acquire()  # bounded: at most this many results wait for their writer
                future = writers.submit(_write, d, result, out, options, report, advance)
                future.add_done_callback(lambda _f: writer_slots.release())
        except BaseException:
            writers.shutdown(wait=True, cancel_futures=False)  # finish what is being written (atomic anyway)
            raise


def _predict_robustly(
    predictor: Any, items: Iterator[tuple[Any, np.ndarray]], options: PipelineOptions, report: Report, advance: Callable
) -> Iterator[tuple[Any, Any]]:
    """``predictor.predict_iter`` in the predictor's own batches, except that a batch that fails as a whole is
    retried image by image, so one bad image costs only itself. With tiling, images go one by one (their tiles
    are the batches)."""
    batch_size = 1 if options.tiling else options.batch_size
    tiled = {"tiling": options.tiling, "batch_size": options.batch_size} if options.tiling else {}

    def flush(group: list[tuple[Any, np.ndarray]]) -> Iterator[tuple[Any, Any]]:
        try:
            yield from list(predictor.predict_iter(group, **({"batch_size": len(group)} | tiled)))
        except (RuntimeError, ValueError, MemoryError) as e:
            if len(group) == 1:
                report.fail(group[0][0].item.source, f"inference failed: {e}")
                advance()
                return
            logger.warning("batch of %d failed (%s); retrying one by one", len(group), e)
            for one in group:
                yield from flush([one])

    for group in batches_by_size(items, predictor.input_size, batch_size, image=lambda kv: kv[1]):
        yield from flush(group)


def _align_source(align_to: Path, item: InputItem) -> Path:
    from ..align.metric import KNOWN_DEPTH_SUFFIXES

    if align_to.is_file():
        return align_to
    for suffix in sorted(KNOWN_DEPTH_SUFFIXES):
        candidate = align_to / (item.stem + suffix)
        if candidate.is_file():
            return candidate
    raise ValueError(f"no known-depth file {align_to / item.stem}.({'|'.join(sorted(KNOWN_DEPTH_SUFFIXES))})")


def _write(d: _Decoded, result: Any, out: Path, options: PipelineOptions, report: Report, advance: Callable) -> None:
    from ..io import outputs

    item = d.item
    try:
        depth, kind = result.prediction, result.kind
        paths = item.output_paths(out, options.formats)
        if options.align_to is not None:
            depth, kind = _align(item, depth, kind, out, options.align_to)
        intrinsics = None
        if "ply" in paths:
            from ..io.pointcloud import exif_focal_px, intrinsics_for

            height, width = depth.shape
            focal = None if options.intrinsics else exif_focal_px(item.source, width, height)
            intrinsics = intrinsics_for(width, height, **options.intrinsics, exif_focal_px=focal)
        outputs.write_depth_outputs(
            paths,
            depth,
            kind,
            image_rgb=d.image_rgb,
            colormap=options.colormap,
            intrinsics=intrinsics,
            remove_edges=options.remove_edges,
        )
        if "tiling" in result.meta:
            with atomic_write(item.output_path(out, "_tiling.json"), "w") as f:
                json.dump({"source": item.source, **result.meta["tiling"]}, f, indent=2)
        report.ok()
    except Exception as e:  # any failure of one item is reported and the run goes on
        report.fail(item.source, f"writing outputs failed: {type(e).__name__}: {e}")
    finally:
        advance()


def _align(item: InputItem, depth: np.ndarray, kind: str, out: Path, align_to: Path) -> tuple[np.ndarray, str]:
    """Relative (or metric) output -> metres fitted to the known depths; the fit goes to ``<stem>_align.json``."""
    from ..align.metric import align_to_metric, read_known_depth

    disparity = 1.0 / np.maximum(depth, 1e-6) if kind == "metric" else depth
    known, mask = read_known_depth(_align_source(align_to, item), depth.shape)
    aligned = align_to_metric(disparity, known, mask)
    with atomic_write(item.output_path(out, "_align.json"), "w") as f:
        json.dump({"source": item.source, **aligned.to_dict()}, f, indent=2)
    logger.info("%s: %s", item.source, aligned.summary())
    return aligned.depth_m, "metric"


# ----------------------------------------------------------------------------------------------------------------
# Videos and streams


def _run_video(predictor: Any, item: InputItem, out: Path, options: PipelineOptions, report: Report) -> None:
    from .video import process_video

    out_path = item.output_path(out, "")
    with _progress(options.progress, desc=item.source, unit="frame") as bar:

        def progress(done: int, total: int | None) -> None:
            if bar is not None:
                bar.total = total
                bar.update(done - bar.n)

        try:
            summary = process_video(
                predictor,
                Path(item.source),
                out_path.parent,
                out_path.name,
                formats=set(options.formats),
                colormap=options.colormap,
                stabilize=options.stabilize,
                batch_size=options.batch_size,
                progress=progress,
            )
        except Exception as e:  # one bad video must not stop the rest
            report.fail(item.source, f"video failed: {e}")
            return
    report.ok()
    logger.info("%s: %d frames at %s fps -> %s", item.source, summary["frames"], summary["fps_rational"],
                ", ".join(str(p) for p in summary["outputs"].values()))  # fmt: skip


def _run_stream(predictor: Any, item: InputItem, out: Path | None, options: PipelineOptions, report: Report) -> None:
    from .video import run_stream, video_output_paths

    sbs = "sbs" in options.formats and "color" not in options.formats
    fmt = "sbs" if sbs else "color"
    target = None if out is None else video_output_paths(out, item.stem, {fmt})[fmt]
    try:
        summary = run_stream(
            predictor,
            item.source,
            out=target,
            show=options.show,
            colormap=options.colormap,
            max_frames=options.max_frames,
            stabilize=options.stabilize,
            sbs=sbs,
        )
    except Exception as e:
        report.fail(item.source, f"stream failed: {e}")
        return
    report.ok()
    report.notes.append(
        f"{item.source}: {summary['frames']} frames at {summary['fps']:.1f} frames/s"
        + (f" -> {summary['output']}" if summary.get("output") else "")
    )
