"""``depth-anything predict``: depth for images, folders, lists, globs, videos and cameras.

The image pipeline overlaps its three stages so the model does not wait on I/O: a thread pool decodes images
ahead of the model (bounded window), the main thread batches and runs the model, and a writer pool encodes and
writes outputs (bounded queue). Memory stays bounded by the window sizes, whatever the number of inputs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import EXIT_FAILURES, EXIT_OK, UsageError
from .common import add_model_arguments, load_predictor

logger = logging.getLogger(__name__)

DEFAULT_FORMATS = ("png16", "color")
#: Images whose longer side is more than this many times the shorter are refused by default: the model sees the
#: shorter side at --input-size, so a 100000 x 500 panorama would run at 518 x 103600 (274k tokens).
DEFAULT_MAX_ASPECT = 16.0

HELP_EPILOG = """\
inputs:
  image files; folders (searched recursively for images; hidden files/folders and the --out folder skipped);
  .txt lists (one INPUT per line, relative to the list's folder, '#' comments); quoted glob patterns
  ("shots/**/*.jpg"); video files; camera/stream sources (webcam index like 0, or rtsp:// / http:// URLs).

output naming:
  OUT/<stem><suffix>, where <stem> is the input's path relative to the deepest folder containing all INPUTs,
  without its extension (photos/a/x.jpg given as 'photos' -> OUT/a/x_color.png; cam1/x.jpg and cam2/x.jpg
  -> OUT/cam1/x_color.png and OUT/cam2/x_color.png; x.jpg and x.png in one folder keep their extension:
  OUT/x.jpg_color.png). One file per format:
    npy    <stem>.npy           float32 (H, W): exactly the model's output (disparity, or metres)
    png16  <stem>_depth16.png   16-bit PNG. relative: value = min + v/65535*(max-min), min/max in the PNG text
                                chunk 'depth_anything_v2' (JSON); metric: millimetres (v/1000 m), 0 = none
    color  <stem>_color.png     colourised (--colormap, default Spectral_r), red = near
    gray   <stem>_gray.png      8-bit grayscale, white = near
    sbs    <stem>_sbs.png       input | gap | colourised
    pfm    <stem>.pfm           float32 PFM (lossless)
    ply    <stem>.ply           coloured point cloud (metric models, or with --align-to)
  'all' = every format but ply. --align-to also writes <stem>_align.json (the fit and its quality).
  Videos: color -> <stem>_depth.mp4, sbs -> <stem>_sbs.mp4, gray -> <stem>_gray.mp4, npy -> <stem>_depth.npy
  (N, H, W) + <stem>_depth.json; other formats are ignored for videos. Streams: OUT/camera0_depth.mp4,
  OUT/stream_<host>_<path>_depth.mp4. Writes are atomic (a killed run leaves no partial file under a final
  name); --skip-existing skips inputs whose requested outputs all exist, so it resumes a killed run.

exit status: 0 all inputs done, 1 some inputs failed (reported, the rest completed), 2 usage error,
3 the model is neither cached nor downloadable.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..io.outputs import FORMATS

    p = subparsers.add_parser(
        "predict",
        help="depth maps for images, folders, lists, globs, videos and cameras",
        description="Predict depth for every INPUT and write the requested formats under --out.",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="images, folders, .txt lists, globs, videos, streams")
    p.add_argument("-o", "--out", type=Path, help="output folder (required unless only showing streams)")
    m = add_model_arguments(p)
    m.add_argument("--batch-size", type=int, default=1, help="images per forward pass (same working size)")
    o = p.add_argument_group("outputs")
    o.add_argument(
        "--format",
        default=",".join(DEFAULT_FORMATS),
        help=f"comma-separated list of {', '.join(FORMATS)} or 'all' (default: {','.join(DEFAULT_FORMATS)})",
    )
    o.add_argument("--colormap", default="Spectral_r", help="colormap of color/sbs outputs (default Spectral_r)")
    o.add_argument("--skip-existing", action="store_true", help="skip inputs whose requested outputs all exist")
    r = p.add_argument_group("reading")
    r.add_argument("--max-pixels", type=float, default=100.0, help="refuse larger images, megapixels (default 100)")
    r.add_argument("--max-side", type=int, help="downscale images whose longer side exceeds this (outputs too)")
    r.add_argument(
        "--max-aspect", type=float, default=DEFAULT_MAX_ASPECT, help="refuse more elongated images (default 16)"
    )
    r.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="decoding/writing threads")
    g = p.add_argument_group("3D and metric")
    g.add_argument("--fx", type=float, help="focal length in pixels (fy defaults to fx)")
    g.add_argument("--fy", type=float)
    g.add_argument("--cx", type=float, help="principal point (default: image centre)")
    g.add_argument("--cy", type=float)
    g.add_argument("--fov", type=float, metavar="DEG", help="horizontal field of view instead of --fx/--fy")
    g.add_argument("--keep-edges", action="store_true", help="keep flying pixels at depth edges in point clouds")
    g.add_argument(
        "--align-to",
        type=Path,
        metavar="PATH",
        help="known depths (depth PNG in mm / .npy in m / .csv row,col,depth_m) to turn relative output into "
        "metres; a folder holds one file per input named <stem>.<ext>",
    )
    v = p.add_argument_group("video and cameras")
    v.add_argument("--stabilize", action="store_true", help="stabilise the scale/shift of video frames over time")
    v.add_argument("--show", action="store_true", help="show camera/stream depth in a window")
    v.add_argument("--max-frames", type=int, help="stop streams after this many frames")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------------------------------------------
# Options


@dataclass
class Options:
    out: Path | None
    formats: list[str]
    colormap: str
    skip_existing: bool
    max_pixels: int | None
    max_side: int | None
    max_aspect: float
    workers: int
    batch_size: int
    intrinsics_args: dict[str, float]
    remove_edges: bool
    align_to: Path | None
    stabilize: bool
    show: bool
    max_frames: int | None
    progress: bool


def _parse_formats(text: str) -> list[str]:
    from ..io.outputs import FORMATS

    names = [f.strip().lower() for f in text.split(",") if f.strip()]
    if names == ["all"]:
        return [f for f in FORMATS if f != "ply"]
    unknown = [f for f in names if f not in FORMATS]
    if unknown or not names:
        raise UsageError(f"--format: expected a comma-separated list of {', '.join(FORMATS)} or 'all', got {text!r}")
    return list(dict.fromkeys(names))


def _options(args: argparse.Namespace) -> Options:
    from ..io.outputs import get_colormap

    formats = _parse_formats(args.format)
    try:
        get_colormap(args.colormap)
    except ValueError as e:
        raise UsageError(f"--colormap: {e}") from None
    for name in ("batch_size", "workers", "input_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')}: expected >= 1, got {getattr(args, name)}")
    if args.max_side is not None and args.max_side < 1:
        raise UsageError(f"--max-side: expected >= 1, got {args.max_side}")
    if args.max_pixels <= 0:
        raise UsageError(f"--max-pixels: expected > 0 megapixels, got {args.max_pixels}")
    if args.max_aspect < 1:
        raise UsageError(f"--max-aspect: expected >= 1, got {args.max_aspect}")
    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError(f"--max-frames: expected >= 1, got {args.max_frames}")
    if args.fov is not None and (args.fx is not None or args.fy is not None):
        raise UsageError("--fov: give either --fov or --fx/--fy, not both")
    if args.fov is not None and not 0 < args.fov < 180:
        raise UsageError(f"--fov: expected degrees in (0, 180), got {args.fov}")
    for name in ("fx", "fy"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise UsageError(f"--{name}: expected > 0 pixels, got {value}")
    if args.align_to is not None and not args.align_to.exists():
        raise UsageError(f"--align-to: {args.align_to}: no such file or folder")
    intrinsics_args = {
        k: v for k, v in (("fx", args.fx), ("fy", args.fy), ("cx", args.cx), ("cy", args.cy)) if v is not None
    }
    if args.fov is not None:
        intrinsics_args["fov_deg"] = args.fov
    return Options(
        out=args.out,
        formats=formats,
        colormap=args.colormap,
        skip_existing=args.skip_existing,
        max_pixels=round(args.max_pixels * 1e6),
        max_side=args.max_side,
        max_aspect=args.max_aspect,
        workers=args.workers,
        batch_size=args.batch_size,
        intrinsics_args=intrinsics_args,
        remove_edges=not args.keep_edges,
        align_to=args.align_to,
        stabilize=args.stabilize,
        show=args.show,
        max_frames=args.max_frames,
        progress=not args.no_progress,
    )


# ----------------------------------------------------------------------------------------------------------------
# Bookkeeping


@dataclass
class Report:
    done: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    bar: Any = None

    def fail(self, source: str, reason: str) -> None:
        """Record (and show at once) that ``source`` failed; ``reason`` may repeat the source as its prefix."""
        reason = reason.removeprefix(f"{source}: ")
        with self.lock:
            self.failures.append((source, reason))
        _emit(self.bar, f"failed: {_display(source)}: {reason}")

    def ok(self) -> None:
        with self.lock:
            self.done += 1


def _display(source: str) -> str:
    """A path relative to the working folder when it is inside it (shorter messages), else as is."""
    if "://" in source or not os.path.isabs(source):
        return source
    rel = os.path.relpath(source)
    return source if rel.startswith("..") else rel


def _emit(bar, message: str) -> None:
    if bar is not None:
        bar.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)


@dataclass
class Decoded:
    item: Any  # InputItem
    image_rgb: np.ndarray
    size: tuple[int, int]  # working size of the model


# ----------------------------------------------------------------------------------------------------------------
# The image pipeline


def _decode(item, opts: Options, input_size: int) -> Decoded:
    from ..inference.transforms import working_size
    from ..io.images import read_image

    image_rgb = read_image(item.source, max_pixels=opts.max_pixels, max_side=opts.max_side)
    height, width = image_rgb.shape[:2]
    aspect = max(height, width) / min(height, width)
    size = working_size(height, width, input_size)
    if aspect > opts.max_aspect:
        raise ValueError(
            f"extreme aspect ratio {aspect:.1f}:1 ({width}x{height}): the model would run at "
            f"{size[1]}x{size[0]}; limit {opts.max_aspect:g}:1 (--max-aspect), or crop the image"
        )
    return Decoded(item, image_rgb, size)


def _decoded_stream(items: list, opts: Options, input_size: int, pool: ThreadPoolExecutor, report: Report, bar):
    """Decode ``items`` in ``pool``, ahead of the consumer by a bounded window; yield ``Decoded`` in order.

    Items that fail to decode are reported (and the bar advanced) and not yielded.
    """
    window = max(2 * opts.workers, 2 * opts.batch_size)
    pending: deque[tuple[Any, Future]] = deque()
    it = iter(items)
    exhausted = False
    while True:
        while not exhausted and len(pending) < window:
            item = next(it, None)
            if item is None:
                exhausted = True
                break
            pending.append((item, pool.submit(_decode, item, opts, input_size)))
        if not pending:
            return
        item, future = pending.popleft()
        try:
            yield future.result()
        except (ValueError, OSError, MemoryError) as e:  # ImageReadError is a ValueError
            report.fail(item.source, str(e))
            if bar is not None:
                bar.update(1)


def _batches(decoded: Iterator[Decoded], batch_size: int) -> Iterator[list[Decoded]]:
    """Group consecutive images with the same working size (the predictor batches only those)."""
    batch: list[Decoded] = []
    for d in decoded:
        if batch and (d.size != batch[0].size or len(batch) == batch_size):
            yield batch
            batch = []
        batch.append(d)
    if batch:
        yield batch


def _infer(predictor, batch: list[Decoded], report: Report, bar) -> Iterator[tuple[Decoded, Any]]:
    """Run one batch; if it fails as a whole, retry its images one by one so one bad image costs only itself."""
    try:
        results = list(predictor.predict_iter(((i, d.image_rgb) for i, d in enumerate(batch)), batch_size=len(batch)))
        yield from ((batch[i], r) for i, r in results)
        return
    except (RuntimeError, ValueError, MemoryError) as e:
        if len(batch) == 1:
            report.fail(batch[0].item.source, f"inference failed: {e}")
            if bar is not None:
                bar.update(1)
            return
        logger.warning("batch of %d failed (%s); retrying one by one", len(batch), e)
    for d in batch:
        yield from _infer(predictor, [d], report, bar)


def _align_source(opts: Options, item) -> Path:
    from ..align.metric import KNOWN_DEPTH_SUFFIXES

    assert opts.align_to is not None
    if opts.align_to.is_file():
        return opts.align_to
    for suffix in sorted(KNOWN_DEPTH_SUFFIXES):
        candidate = opts.align_to / (item.stem + suffix)
        if candidate.is_file():
            return candidate
    raise ValueError(f"no known-depth file {opts.align_to / item.stem}.({'|'.join(sorted(KNOWN_DEPTH_SUFFIXES))})")


def _write(d: Decoded, result, opts: Options, report: Report, bar) -> None:
    from ..io import outputs

    item = d.item
    try:
        depth, kind = result.depth, result.kind
        assert opts.out is not None
        paths = item.output_paths(opts.out, opts.formats)
        if opts.align_to is not None:
            from ..align.metric import align_to_metric, read_known_depth

            disparity = 1.0 / np.maximum(depth, 1e-6) if kind == "metric" else depth
            known, mask = read_known_depth(_align_source(opts, item), depth.shape)
            aligned = align_to_metric(disparity, known, mask)
            with outputs.atomic_open(item.output_path(opts.out, "_align.json"), "w") as f:
                json.dump({"source": item.source, **aligned.to_dict()}, f, indent=2)
            logger.info("%s: %s", item.source, aligned.summary())
            depth, kind = aligned.depth_m, "metric"
        intrinsics = None
        if "ply" in paths:
            from ..io.pointcloud import exif_focal_px, intrinsics_for

            height, width = depth.shape
            focal = None if opts.intrinsics_args else exif_focal_px(item.source, width, height)
            intrinsics = intrinsics_for(width, height, **opts.intrinsics_args, exif_focal_px=focal)
        outputs.write_depth_outputs(
            paths,
            depth,
            kind,
            image_rgb=d.image_rgb,
            colormap=opts.colormap,
            intrinsics=intrinsics,
            remove_edges=opts.remove_edges,
        )
        report.ok()
    except Exception as e:  # any failure of one item is reported and the run goes on
        report.fail(item.source, f"writing outputs failed: {type(e).__name__}: {e}")
    finally:
        if bar is not None:
            bar.update(1)


def _outputs_exist(item, opts: Options) -> bool:
    assert opts.out is not None
    paths = list(item.output_paths(opts.out, opts.formats).values())
    if opts.align_to is not None:
        paths.append(item.output_path(opts.out, "_align.json"))
    return all(p.is_file() for p in paths)


def _video_outputs_exist(item, opts: Options) -> bool:
    from ..inference import video

    assert opts.out is not None
    out_path = item.output_path(opts.out, "")
    return all(
        p.is_file() for p in video.video_output_paths(out_path.parent, out_path.name, set(opts.formats)).values()
    )


def run_images(predictor, items: list, opts: Options, report: Report, bar) -> None:
    """Decode -> infer -> write with overlap; failures are recorded in ``report``."""
    writer_slots = threading.BoundedSemaphore(max(2, opts.workers) + opts.batch_size)
    with (
        ThreadPoolExecutor(opts.workers, thread_name_prefix="decode") as decoders,
        ThreadPoolExecutor(max(1, opts.workers // 2 + 1), thread_name_prefix="write") as writers,
    ):
        try:
            for batch in _batches(
                _decoded_stream(items, opts, predictor.input_size, decoders, report, bar), opts.batch_size
            ):
                for d, result in _infer(predictor, batch, report, bar):
                    writer_slots.acquire()  # bounded: at most this many results wait for their writer
                    future = writers.submit(_write, d, result, opts, report, bar)
                    future.add_done_callback(lambda _f: writer_slots.release())
        except BaseException:
            decoders.shutdown(wait=False, cancel_futures=True)
            writers.shutdown(wait=True, cancel_futures=False)  # finish what is being written (atomic anyway)
            raise


# ----------------------------------------------------------------------------------------------------------------
# Entry point


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..io.inputs import InputError, expand_inputs

    opts = _options(args)
    # The CLI decides what the user sees: the pixel limit is ours (--max-pixels), Pillow's warning is noise.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    try:
        expanded = expand_inputs(args.inputs, exclude=[opts.out] if opts.out is not None else [])
    except InputError as e:
        raise UsageError(str(e)) from None
    files = [i for i in expanded.items if i.kind != "stream"]
    streams = [i for i in expanded.items if i.kind == "stream"]
    if not expanded.items and not expanded.failures:
        raise UsageError("no images, videos or streams found in the inputs")
    if opts.out is None and (files or not opts.show):
        raise UsageError("--out is required (only camera/stream inputs with --show can do without it)")
    if opts.out is not None:
        out_abs = Path(os.path.abspath(opts.out))
        if expanded.base is not None and any(Path(os.path.abspath(s)) == out_abs for s in args.inputs):
            raise UsageError(f"--out {opts.out} is also an input folder: outputs would be read as inputs next time")
        sources = {os.path.abspath(i.source) for i in files}
        for item in files:
            for path in item.output_paths(opts.out, opts.formats).values():
                if os.path.abspath(path) in sources:
                    raise UsageError(f"output {path} would overwrite the input of the same name")

    images = [i for i in files if i.kind == "image"]
    videos = [i for i in files if i.kind == "video"]
    if videos:
        from ..inference.video import VIDEO_FORMATS

        image_only = [f for f in opts.formats if f not in VIDEO_FORMATS]
        image_only += ["--align-to"] if opts.align_to is not None else []
        if image_only:
            logger.warning(
                "%s: for images only, not applied to the %d video(s); videos get %s",
                ", ".join(image_only), len(videos), ", ".join(f for f in VIDEO_FORMATS if f in opts.formats) or "color",
            )  # fmt: skip
    needs_metric = "ply" in opts.formats
    report = Report()
    for failure in expanded.failures:
        report.fail(failure.source, failure.reason)
    if opts.skip_existing:
        todo = [i for i in images if not _outputs_exist(i, opts)]
        todo_videos = [i for i in videos if not _video_outputs_exist(i, opts)]
        report.skipped = len(images) - len(todo) + len(videos) - len(todo_videos)
        images, videos = todo, todo_videos
    started = time.perf_counter()
    if images or videos or streams:
        predictor = load_predictor(args)
        if needs_metric and not predictor.is_metric and opts.align_to is None:
            raise UsageError(
                "--format ply needs metric depth: use a metric model (--model metric-..., --max-depth) or --align-to"
            )
        if opts.out is not None:
            try:
                opts.out.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UsageError(f"--out {opts.out}: cannot create the output folder ({e.strerror or e})") from None
        logger.info("model on %s, %s; %d images, %d videos, %d streams", predictor.device, predictor.dtype,
                    len(images), len(videos), len(streams))  # fmt: skip
        if images:
            bar = _progress_bar(len(images), opts.progress)
            report.bar = bar
            try:
                run_images(predictor, images, opts, report, bar)
            finally:
                if bar is not None:
                    bar.close()
                report.bar = None
        for item in videos:
            _run_video(predictor, item, opts, report)
        for item in streams:
            _run_stream(predictor, item, opts, report)
    elapsed = time.perf_counter() - started
    _summary(report, elapsed)
    return EXIT_FAILURES if report.failures else EXIT_OK


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (logs, CI); count, rate and ETA otherwise.
    return tqdm(total=total, unit="img", disable=None, dynamic_ncols=True, file=sys.stderr)


def _run_video(predictor, item, opts: Options, report: Report) -> None:
    from ..inference import video

    assert opts.out is not None
    out_path = item.output_path(opts.out, "")
    bar = None
    try:
        if opts.progress:
            from tqdm import tqdm

            bar = tqdm(desc=_display(item.source), unit="frame", disable=None, dynamic_ncols=True, file=sys.stderr)
        report.bar = bar

        def progress(done: int, total: int | None) -> None:
            if bar is not None:
                bar.total = total
                bar.update(done - bar.n)

        summary = video.process_video(
            predictor,
            Path(item.source),
            out_path.parent,
            out_path.name,
            formats=set(opts.formats),
            colormap=opts.colormap,
            stabilize=opts.stabilize,
            batch_size=opts.batch_size,
            progress=progress,
        )
        report.ok()
        logger.info("%s: %d frames at %s fps -> %s", item.source, summary["frames"], summary["fps_rational"],
                    ", ".join(str(p) for p in summary["outputs"].values()))  # fmt: skip
    except Exception as e:  # one bad video must not stop the rest
        report.fail(item.source, f"video failed: {e}")
    finally:
        if bar is not None:
            bar.close()
        report.bar = None


def _run_stream(predictor, item, opts: Options, report: Report) -> None:
    from ..inference import video

    out = None
    sbs = "sbs" in opts.formats and "color" not in opts.formats
    if opts.out is not None:
        out = video.video_output_paths(opts.out, item.stem, {"sbs" if sbs else "color"})["sbs" if sbs else "color"]
    try:
        summary = video.run_stream(
            predictor,
            item.source,
            out=out,
            show=opts.show,
            colormap=opts.colormap,
            max_frames=opts.max_frames,
            stabilize=opts.stabilize,
            sbs=sbs,
        )
        report.ok()
        _emit(None, f"{item.source}: {summary['frames']} frames at {summary['fps']:.1f} frames/s"
                    + (f" -> {summary['output']}" if summary.get("output") else ""))  # fmt: skip
    except Exception as e:
        report.fail(item.source, f"stream failed: {e}")


def _summary(report: Report, elapsed: float) -> None:
    parts = [f"{report.done} done"]
    if report.skipped:
        parts.append(f"{report.skipped} skipped (outputs exist)")
    parts.append(f"{len(report.failures)} failed")
    print(f"predict: {', '.join(parts)} in {elapsed:.1f} s", file=sys.stderr)
    if report.failures:
        print("failed inputs:", file=sys.stderr)
        for source, reason in report.failures:
            print(f"  {_display(source)}: {reason}", file=sys.stderr)
