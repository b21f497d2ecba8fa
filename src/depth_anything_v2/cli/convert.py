"""``depth-anything convert``: between the reference format (.pth / .safetensors) and the transformers format."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import ModelUnavailable, UsageError

_REFERENCE_SUFFIXES = (".pth", ".pt", ".safetensors")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a checkpoint between the reference and the transformers (-hf) format",
        description=(
            "Convert a checkpoint (any form load_model accepts: official .pth, .safetensors, transformers "
            "directory, training checkpoint, published model name) to the reference format (DST ending in "
            ".pth/.pt/.safetensors) or to a transformers-format directory (any other DST)."
        ),
    )
    p.add_argument("source", help="checkpoint file, transformers directory or published model name")
    p.add_argument("dest", help="output .pth/.safetensors file, or a new directory for the transformers format")
    p.add_argument("--to", choices=["reference", "hf"], help="output format (default: from DST's suffix)")
    p.add_argument("--encoder", help="check the encoder (default: inferred from tensor shapes)")
    p.add_argument("--max-depth", type=float, help="metric model range in metres (written to config.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..weights.checkpoints import save_hf, save_reference
    from ..weights.loading import ModelUnavailableError, load_model

    dest = Path(args.dest)
    to = args.to or ("reference" if dest.suffix in _REFERENCE_SUFFIXES else "hf")
    if to == "reference" and dest.suffix not in _REFERENCE_SUFFIXES:
        raise UsageError(f"expected DST ending in {', '.join(_REFERENCE_SUFFIXES)} for --to reference, got {dest}")
    if dest.exists() and (dest.is_file() or any(dest.iterdir())):
        raise UsageError(f"{dest} exists; choose a new path")
    try:
        model = load_model(args.source, encoder=args.encoder, max_depth=args.max_depth)
    except ModelUnavailableError as e:
        raise ModelUnavailable(str(e)) from None
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    if to == "hf":
        save_hf(model.state_dict(), dest, model.encoder, model.max_depth)
    else:
        save_reference(model.state_dict(), dest)
    kind = f"metric, max_depth {model.max_depth:g} m" if model.is_metric else "relative"
    print(f"wrote {dest} ({to} format, encoder {model.encoder}, {kind})")
    return 0
