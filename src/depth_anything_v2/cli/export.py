"""``depth-anything export``: a checkpoint to ONNX or OpenVINO IR, fp32 / fp16 / int8, validated."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from . import UsageError
from .common import MODEL_NAMES_HELP, licence_notice, model_source

EXAMPLES = """examples:
  depth-anything export --model vits --format onnx --out vits.onnx             # any multiple-of-14 size
  depth-anything export --weights my.pth --format openvino --out my.xml        # OpenVINO IR, fp32 weights
  depth-anything export --model vits --format onnx --out vits_518x686.onnx --input-size 518x686
  depth-anything export --model vits --format openvino --out vits_int8.xml --precision int8 --calibration photos/
  depth-anything export --model vits --format nnarchive --input-size 392x518 --out da2_vits.tar.xz   # OAK (RVC4)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a model to ONNX or OpenVINO (dynamic or fixed size; fp32, fp16, int8)",
        description=(
            "Export a model to ONNX or OpenVINO IR with the reference's numbers at any input size that is a "
            "multiple of 14 (or at one fixed size), metadata inside the file, and a check against PyTorch "
            "before anything is written."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="NAME", help=f"published model: {MODEL_NAMES_HELP} (default: vits)")
    src.add_argument("--weights", type=Path, metavar="PATH", help="checkpoint (any form load_model accepts)")
    p.add_argument("--encoder", help="encoder of --weights (checked; inferred if omitted)")
    p.add_argument("--max-depth", type=float, help="metric model range in metres (20 indoor, 80 outdoor)")
    p.add_argument(
        "--format",
        choices=["onnx", "openvino", "nnarchive"],
        help="default: from --out's suffix (.onnx / .xml / .tar.xz: a Luxonis NN archive for OAK cameras)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="output file: .onnx, or .xml with the .bin beside it (default: the model name + the format's suffix)",
    )
    p.add_argument("--input-size", type=_size, metavar="HxW", help="fixed input size (default: dynamic H and W)")
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp32", help="stored precision")
    p.add_argument(
        "--calibration", type=Path, metavar="DIR", help="int8 calibration images (default: the packaged examples)"
    )
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run, _default_model="vits")


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", text.strip())
    if m is None or int(m[1]) % 14 or int(m[2]) % 14 or int(m[1]) == 0 or int(m[2]) == 0:
        raise argparse.ArgumentTypeError(f"expected HxW with multiples of 14 (e.g. 518x686), got {text!r}")
    return int(m[1]), int(m[2])


def run(args: argparse.Namespace) -> int:
    from ..export.api import FORMATS, format_for

    fmt = args.format
    stem = args.weights.stem if args.weights is not None else f"depth_anything_v2_{args.model or 'vits'}"
    out = args.out or (Path(stem + FORMATS[fmt]) if fmt else None)
    if out is None:
        raise UsageError("expected --out PATH (.onnx, .xml or .tar.xz) or --format")
    try:
        fmt = format_for(out, fmt)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if fmt == "nnarchive" and args.input_size is None:
        raise UsageError("--format nnarchive: expected --input-size HxW (an NN archive holds a fixed-size model)")
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; choose another --out or pass --force")
    if args.calibration is not None and args.precision != "int8":
        raise UsageError("--calibration is for --precision int8")
    if args.calibration is not None and not args.calibration.is_dir():
        raise UsageError(f"--calibration: {args.calibration}: no such folder")
    source = model_source(args)
    notice = licence_notice(source)
    if notice:
        print(notice, file=sys.stderr)
    from ..export import ExportError, export_model

    try:
        result = export_model(
            source,
            out,
            format=fmt,
            input_size=args.input_size,
            precision=args.precision,
            calibration=args.calibration,
            encoder=args.encoder,
            max_depth=args.max_depth,
        )
    except ImportError as e:
        raise UsageError(str(e)) from None
    except (OSError, ValueError) as e:  # unreadable checkpoints, bad calibration folders
        raise UsageError(f"cannot export {str(source)!r}: {e}") from None
    except ExportError as e:
        print(f"depth-anything export: error: {e}", file=sys.stderr)
        return 1
    info = result.info
    size = "any multiple of 14" if info.input_size is None else "x".join(map(str, info.input_size))
    kind = f"metric, max_depth {info.max_depth:g} m" if info.max_depth else "relative (disparity)"
    print(f"wrote {', '.join(map(str, result.files))} ({fmt}, {args.precision}, {info.encoder}, {kind}; input {size})")
    if result.accuracy is not None:
        print(result.accuracy.summary())
    return 0
