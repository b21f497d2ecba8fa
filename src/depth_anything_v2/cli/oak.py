"""``depth-anything oak``: record an OAK session; the OAK inputs of ``predict`` (``oak:``, recordings).

depth-anything oak record session/ --seconds 20                  # RGB + stereo depth + calibration
depth-anything predict session/ --fuse stereo --roi 300,180,40,40 --out fused/ --format png16,color,ply
depth-anything predict oak: --stereo --fuse stereo --show --out live/
depth-anything oak archive da2.tar.xz --onnx da2_518x392.onnx --input-size 518x392   # RVC4 NN archive
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from . import EXIT_FAILURES, EXIT_OK, UsageError

OAK_PREFIX = "oak:"


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", text.strip())
    if m is None or min(int(m[1]), int(m[2])) < 1:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x400, got {text!r}")
    return int(m[1]), int(m[2])


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("oak", help="OAK cameras: record sessions, build NN archives for the camera")
    sub = p.add_subparsers(dest="oak_command", metavar="ACTION", required=True)
    r = sub.add_parser("record", help="record RGB, stereo depth and calibration to a folder (replay with predict)")
    r.add_argument("dir", type=Path, help="new recording folder")
    r.add_argument("--seconds", type=float, required=True, help="how long to record")
    _camera_arguments(r)
    r.set_defaults(func=run_record)
    a = sub.add_parser("archive", help="Luxonis NN archive (.tar.xz) of an ONNX export, for RVC4 cameras")
    a.add_argument("out", type=Path, help="archive path (.tar.xz)")
    a.add_argument("--onnx", type=Path, required=True, help="fixed-size ONNX export of the model")
    a.add_argument("--input-size", type=_size, required=True, metavar="WxH", help="the ONNX's input size")
    a.set_defaults(func=run_archive)


def _camera_arguments(p: argparse.ArgumentParser) -> None:
    from ..oak.sources import DEFAULT_FPS, DEFAULT_SIZE

    g = p.add_argument_group("OAK camera")
    g.add_argument("--device", metavar="MXID", help="one camera among several (default: the first found)")
    g.add_argument("--size", type=_size, default=DEFAULT_SIZE, metavar="WxH", help="RGB and depth size (640x400)")
    g.add_argument("--fps", type=float, default=DEFAULT_FPS, help=f"frame rate (default {DEFAULT_FPS:g})")
    g.add_argument("--no-stereo", dest="stereo", action="store_false", help="(record) RGB only, no stereo depth")


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    """The OAK options of ``predict`` (inputs ``oak:``, ``oak:MXID`` or recording folders)."""
    g = p.add_argument_group("OAK cameras and recordings (inputs oak:, oak:MXID, recording folders)")
    g.add_argument("--stereo", action="store_true", help="live: add stereo depth aligned to the RGB camera")
    g.add_argument("--oak-size", type=_size, metavar="WxH", help="live: RGB/depth size (default 640x400)")
    g.add_argument("--oak-fps", type=float, help="live: frame rate (default 15)")
    g.add_argument(
        "--fuse",
        choices=["stereo", "fill", "replace"],
        help="metric depth from stereo: stereo = fill (stereo, "
        "aligned model in the holes) or replace (aligned model everywhere)",
    )
    g.add_argument("--roi", action="append", metavar="x,y,w,h", help="spatial readout box (repeatable)")
    g.add_argument("--roi-file", type=Path, help="JSON boxes: a list, or {frame name: [boxes]}")
    g.add_argument("--on-device", type=Path, metavar="ARCHIVE", help="live: run this NN archive on the camera")


def is_oak_input(text: str) -> bool:
    from ..oak.recording import is_recording

    return text.startswith(OAK_PREFIX) or is_recording(text)


def run_predict(args: argparse.Namespace) -> int:
    """``predict`` on OAK inputs: one :func:`~depth_anything_v2.oak.runner.run_source` per input."""
    from ..oak.recording import RecordingError
    from ..oak.runner import OakRunOptions, run_source
    from ..oak.sources import OakSource, OakUnavailableError, RecordingSource
    from ..oak.spatial import RoiError, RoiSpec, parse_roi, read_roi_file
    from .common import load_predictor
    from .predict import _parse_formats

    if not all(is_oak_input(s) for s in args.inputs):
        raise UsageError("OAK inputs (oak:, recording folders) cannot be mixed with other inputs")
    if args.out is None and not args.show:
        raise UsageError("--out: required unless --show")
    try:
        rois = None
        if args.roi or args.roi_file:
            spec = read_roi_file(args.roi_file) if args.roi_file else RoiSpec()
            rois = RoiSpec(tuple(parse_roi(t) for t in args.roi or ()) + spec.every, spec.per_frame)
    except RoiError as e:
        raise UsageError(f"--roi: {e}") from None
    fuse = {"stereo": "fill"}.get(args.fuse, args.fuse)
    predictor = None if args.on_device else load_predictor(args)
    failed = 0
    for text in args.inputs:
        out = args.out
        if out is not None and len(args.inputs) > 1:
            out = out / (text[len(OAK_PREFIX) :] or "oak" if text.startswith(OAK_PREFIX) else Path(text).name)
        opts = OakRunOptions(
            out,
            tuple(_parse_formats(args.format)),
            fuse,
            rois=rois,
            show=args.show,
            colormap=args.colormap,
            max_frames=args.max_frames,
        )
        try:
            if text.startswith(OAK_PREFIX):
                source = OakSource(
                    text[len(OAK_PREFIX) :] or None,
                    size=args.oak_size or (640, 400),
                    fps=args.oak_fps or 15.0,
                    stereo=args.stereo,
                    archive=args.on_device,
                )
            else:
                source = RecordingSource(text)
            with source:
                report = run_source(source, predictor, opts)
        except (RecordingError, OakUnavailableError) as e:
            print(f"failed: {text}: {e}", file=sys.stderr)
            failed += 1
            continue
        except ValueError as e:
            raise UsageError(str(e)) from None
        for name, reason in report.failed + report.readout_errors:
            print(f"failed: {text} frame {name}: {reason}", file=sys.stderr)
        print(
            f"predict: {text}: {report.frames} frames ({report.fps:.1f} fps), {len(report.failed)} failed, "
            f"{report.fallbacks} on the last good fit, {len(report.readout_errors)} readout errors",
            file=sys.stderr,
        )
        failed += not report.ok
    return EXIT_FAILURES if failed else EXIT_OK


def run_record(args: argparse.Namespace) -> int:
    from ..oak.recording import RecordingError, RecordingWriter
    from ..oak.sources import OakSource, OakUnavailableError

    if not args.seconds > 0:
        raise UsageError(f"--seconds: expected > 0, got {args.seconds}")
    try:
        source = OakSource(args.device, size=args.size, fps=args.fps, stereo=args.stereo)
    except OakUnavailableError as e:
        print(f"depth-anything oak record: error: {e}", file=sys.stderr)
        return EXIT_FAILURES
    try:
        with (
            source,
            RecordingWriter(
                args.dir, *source.size, source.intrinsics, source.baseline_mm, {"id": source.description}
            ) as writer,
        ):
            end = time.monotonic() + args.seconds
            for frame in source.frames():
                writer.write(frame.image_rgb, frame.stereo_depth_mm, frame.timestamp_s)
                if time.monotonic() >= end:
                    break
    except RecordingError as e:
        raise UsageError(str(e)) from None
    except KeyboardInterrupt:
        pass  # every frame written so far is a valid recording
    print(f"oak record: {writer.count} frames in {args.dir}", file=sys.stderr)
    return EXIT_OK


def run_archive(args: argparse.Namespace) -> int:
    from ..oak.archive import build_nn_archive

    try:
        path = build_nn_archive(args.onnx, args.out, input_size=args.input_size)
    except (OSError, ValueError) as e:
        raise UsageError(str(e)) from None
    print(f"oak archive: wrote {path}", file=sys.stderr)
    return EXIT_OK
