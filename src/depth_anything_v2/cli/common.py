"""Model selection shared by every command that runs a model (predict, eval, app, pseudo-label)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ..configs import PUBLISHED_MODELS, VARIANTS
from . import ModelUnavailable, UsageError

MODEL_NAMES_HELP = ", ".join(PUBLISHED_MODELS)


def add_model_arguments(parser: argparse.ArgumentParser, *, required: bool = False, default_model: str | None = "vits"):
    """``--model NAME | --weights PATH``, ``--encoder``, ``--max-depth``, ``--input-size``, ``--device``,
    ``--precision``, in one "model" group. Returns the group so a command can add its own options to it."""
    group = parser.add_argument_group("model")
    src = group.add_mutually_exclusive_group(required=required)
    default = f" (default: {default_model})" if default_model and not required else ""
    src.add_argument("--model", metavar="NAME", help=f"published model: {MODEL_NAMES_HELP}{default}")
    src.add_argument(
        "--weights",
        type=Path,
        metavar="PATH",
        help="checkpoint: official .pth, .safetensors, transformers-format folder, or training checkpoint",
    )
    group.add_argument(
        "--encoder", choices=sorted(VARIANTS), help="encoder of --weights (checked; inferred if omitted)"
    )
    group.add_argument("--max-depth", type=float, help="metric model range in metres (20 indoor, 80 outdoor)")
    group.add_argument("--input-size", type=int, default=518, help="shorter side the network sees (default 518)")
    group.add_argument("--device", default="auto", type=_device, help="auto, cpu, cuda, cuda:N or mps (default auto)")
    group.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "fp16", "bf16", "auto"],
        help="auto: fp16 on a GPU, fp32 on the CPU (half precision is slow there); default fp32",
    )
    add_runtime_arguments(group)
    parser.set_defaults(_default_model=default_model)
    return group


def add_runtime_arguments(group) -> None:
    """``--backend``, ``--providers``, ``--ov-device``, ``--threads`` (see ``inference.backends``)."""
    group.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "onnxruntime", "openvino"],
        help="runtime (default auto: ONNX Runtime for a .onnx, OpenVINO for a .xml, else torch); "
        "onnxruntime/openvino with a checkpoint export it on the fly",
    )
    group.add_argument(
        "--providers",
        type=lambda s: [p.strip() for p in s.split(",") if p.strip()],
        metavar="LIST",
        help="ONNX Runtime execution providers, in order (e.g. CUDAExecutionProvider,CPUExecutionProvider)",
    )
    group.add_argument("--ov-device", metavar="DEVICE", help="OpenVINO device: CPU (default), GPU, NPU, AUTO")
    group.add_argument("--threads", type=_positive_int, metavar="N", help="CPU threads of the runtime (default all)")


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def backend_options(args: argparse.Namespace) -> dict:
    """The runtime arguments as ``DepthPredictor.from_pretrained`` keywords; ``--threads`` also sets torch's."""
    if args.threads and args.backend in ("auto", "torch"):
        import torch

        torch.set_num_threads(args.threads)
    return {"backend": args.backend, "providers": args.providers, "ov_device": args.ov_device, "threads": args.threads}


def _device(text: str) -> str:
    if re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", text) is None:
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda, cuda:N or mps, got {text!r}")
    return text


def model_source(args: argparse.Namespace) -> str | Path:
    if args.weights is not None:
        return args.weights
    return args.model or args._default_model


def licence_notice(source: str | Path) -> str | None:
    """The line a user sees when picking a published model: what it is and under which licence."""
    m = PUBLISHED_MODELS.get(str(source))
    return None if m is None else f"model {m.name}: {m.description}; weights licence: {m.license}"


def load_predictor(args: argparse.Namespace, *, device: str | None = None):
    """A ``DepthPredictor`` from the model arguments; mistakes and unreadable files become ``UsageError``."""
    from ..inference.predictor import DepthPredictor
    from ..weights.loading import ModelUnavailableError

    source = model_source(args)
    notice = licence_notice(source)
    if notice:
        print(notice, file=sys.stderr)
    try:
        return DepthPredictor.from_pretrained(
            source,
            encoder=args.encoder,
            max_depth=args.max_depth,
            device=device or args.device,
            precision=args.precision,
            input_size=args.input_size,
            **backend_options(args),
        )
    except ModelUnavailableError as e:
        raise ModelUnavailable(str(e)) from None
    except ImportError as e:  # a runtime package is missing: the message names the extra
        raise UsageError(str(e)) from None
    except (OSError, ValueError, RuntimeError) as e:  # CheckpointError is a ValueError
        raise UsageError(f"cannot load model {str(source)!r}: {e}") from None
