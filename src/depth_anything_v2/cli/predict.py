"""``depth-anything predict``: depth for images, folders, lists, globs, videos and cameras.

Parses the options, then calls the library's folder pipeline (:mod:`depth_anything_v2.inference.pipeline`) and
prints what happened.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from ..inference.pipeline import DEFAULT_FORMATS, DEFAULT_MAX_ASPECT, PipelineError, PipelineOptions
from ..inference.tiling import Tiling
from . import EXIT_FAILURES, EXIT_OK, UsageError
from .common import add_model_arguments, load_predictor

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
  'all' = every format but ply. --align-to also writes <stem>_align.json (the fit and its quality), --tile
  <stem>_tiling.json (the tiles per level and how many fell back to the global pass); outputs stay full size.
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
    t = p.add_argument_group("high resolution (tiling; any of these turns it on)")
    t.add_argument("--tile", action="store_true", help="add the detail of overlapping tiles, seamlessly")
    t.add_argument("--tile-size", type=int, metavar="PX", help="finest tiles' side in image pixels (default: auto)")
    t.add_argument("--tile-overlap", type=float, metavar="F", help="minimum overlap of neighbours (default 0.25)")
    t.add_argument("--tile-levels", type=int, metavar="N", help="tile levels, each 2x finer (default: auto, <= 2)")
    v = p.add_argument_group("video and cameras")
    v.add_argument("--stabilize", action="store_true", help="stabilise the scale/shift of video frames over time")
    v.add_argument("--show", action="store_true", help="show camera/stream depth in a window")
    v.add_argument("--max-frames", type=int, help="stop streams after this many frames")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    from .oak import add_predict_arguments

    add_predict_arguments(p)  # OAK cameras and recordings (cli/oak.py)
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------------------------------------------
# Options


def _parse_formats(text: str) -> list[str]:
    from ..io.outputs import FORMATS

    names = [f.strip().lower() for f in text.split(",") if f.strip()]
    if names == ["all"]:
        return [f for f in FORMATS if f != "ply"]
    unknown = [f for f in names if f not in FORMATS]
    if unknown or not names:
        raise UsageError(f"--format: expected a comma-separated list of {', '.join(FORMATS)} or 'all', got {text!r}")
    return list(dict.fromkeys(names))


def _usage_error(e: PipelineError) -> UsageError:
    """The library names options as fields (``max_side``); the user typed flags (``--max-side``)."""
    if e.option is None:
        return UsageError(str(e))
    return UsageError(f"--{e.option.replace('_', '-')}: {e.detail}")


def _options(args: argparse.Namespace) -> PipelineOptions:
    if args.input_size < 1:
        raise UsageError(f"--input-size: expected >= 1, got {args.input_size}")
    if args.max_pixels <= 0:
        raise UsageError(f"--max-pixels: expected > 0 megapixels, got {args.max_pixels}")
    if args.fov is not None and (args.fx is not None or args.fy is not None):
        raise UsageError("--fov: give either --fov or --fx/--fy, not both")
    if args.fov is not None and not 0 < args.fov < 180:
        raise UsageError(f"--fov: expected degrees in (0, 180), got {args.fov}")
    for name in ("fx", "fy"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise UsageError(f"--{name}: expected > 0 pixels, got {value}")
    intrinsics = {
        k: v for k, v in (("fx", args.fx), ("fy", args.fy), ("cx", args.cx), ("cy", args.cy)) if v is not None
    }
    if args.fov is not None:
        intrinsics["fov_deg"] = args.fov
    try:
        return PipelineOptions(
            formats=_parse_formats(args.format),
            colormap=args.colormap,
            skip_existing=args.skip_existing,
            max_pixels=round(args.max_pixels * 1e6),
            max_side=args.max_side,
            max_aspect=args.max_aspect,
            workers=args.workers,
            batch_size=args.batch_size,
            intrinsics=intrinsics,
            remove_edges=not args.keep_edges,
            align_to=args.align_to,
            stabilize=args.stabilize,
            show=args.show,
            max_frames=args.max_frames,
            progress=not args.no_progress,
            tiling=_tiling(args),
        )
    except PipelineError as e:
        raise _usage_error(e) from None


def _tiling(args: argparse.Namespace) -> Tiling | None:
    given = {"tile_size": args.tile_size, "overlap": args.tile_overlap, "levels": args.tile_levels}
    given = {k: v for k, v in given.items() if v is not None}
    if not (args.tile or given):
        return None
    try:
        return Tiling(**given, progress=False if args.no_progress else None)  # None: a bar only on a terminal
    except ValueError as e:
        flag = {"tile_size": "--tile-size", "overlap": "--tile-overlap", "levels": "--tile-levels"}
        raise UsageError(f"{next((f for k, f in flag.items() if k in str(e)), '--tile')}: {e}") from None


# ----------------------------------------------------------------------------------------------------------------
# Entry point


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..inference import pipeline
    from . import oak

    if any(oak.is_oak_input(s) for s in args.inputs):  # OAK cameras and recordings: cli/oak.py
        return oak.run_predict(args)
    options = _options(args)
    # The CLI decides what the user sees: the pixel limit is ours (--max-pixels), Pillow's warning is noise.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    try:
        work = pipeline.plan(args.inputs, args.out, options)
        if not work.has_work:
            report = pipeline.Report(skipped=work.skipped, on_failure=_print_failure)
            for source, reason in work.failures:
                report.fail(source, reason)
        else:
            predictor = load_predictor(args)
            report = pipeline.run(predictor, work, options, on_failure=_print_failure)
    except PipelineError as e:
        raise _usage_error(e) from None
    for note in report.notes:
        print(note, file=sys.stderr)
    _summary(report)
    return EXIT_FAILURES if report.failures else EXIT_OK


def _display(source: str) -> str:
    """A path relative to the working folder when it is inside it (shorter messages), else as is."""
    if "://" in source or not os.path.isabs(source):
        return source
    rel = os.path.relpath(source)
    return source if rel.startswith("..") else rel


def _print_failure(source: str, reason: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"failed: {_display(source)}: {reason}", file=sys.stderr)  # above any progress bar


def _summary(report) -> None:
    parts = [f"{report.done} done"]
    if report.skipped:
        parts.append(f"{report.skipped} skipped (outputs exist)")
    parts.append(f"{len(report.failures)} failed")
    print(f"predict: {', '.join(parts)} in {report.elapsed_s:.1f} s", file=sys.stderr)
    if report.failures:
        print("failed inputs:", file=sys.stderr)
        for source, reason in report.failures:
            print(f"  {_display(source)}: {reason}", file=sys.stderr)
