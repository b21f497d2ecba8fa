"""``export_model``: any model source to ONNX or OpenVINO, fp32/fp16/int8, validated."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..dpt import DepthAnythingV2
from .metadata import ModelInfo
from .onnx import check_input_size, model_info

logger = logging.getLogger(__name__)

FORMATS = {"onnx": ".onnx", "openvino": ".xml"}
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class ExportResult:
    """What was written: ``files`` (the model file first), its metadata, and for int8 the accuracy report."""

    path: Path
    files: list[Path]
    info: ModelInfo
    accuracy: object | None = None


def format_for(out: str | os.PathLike, fmt: str | None) -> str:
    suffix = Path(out).suffix.lower()
    if fmt is None:
        for name, ext in FORMATS.items():
            if suffix == ext:
                return name
        raise ValueError(f"cannot tell the format from {out!r}: expected a .onnx or .xml path, or format=...")
    if fmt not in FORMATS:
        raise ValueError(f"expected format one of {sorted(FORMATS)}, got {fmt!r}")
    if suffix != FORMATS[fmt]:
        raise ValueError(f"expected an output path ending in {FORMATS[fmt]} for format {fmt!r}, got {out}")
    return fmt


def export_model(
    source: DepthAnythingV2 | str | os.PathLike,
    out: str | os.PathLike,
    *,
    format: str | None = None,
    input_size: tuple[int, int] | None = None,
    precision: str = "fp32",
    calibration: str | os.PathLike | None = None,
    encoder: str | None = None,
    max_depth: float | None = None,
    validate: bool = True,
) -> ExportResult:
    """Export a model to ONNX (``.onnx``) or OpenVINO IR (``.xml`` + ``.bin``).

    Args:
        source: a ``DepthAnythingV2`` or anything :func:`depth_anything_v2.load_model` accepts (published name,
            ``.pth``, ``.safetensors``, transformers folder, training checkpoint), with ``encoder``/``max_depth``.
        out: output path; ``format`` defaults to its suffix.
        input_size: ``None`` (dynamic batch, height and width: any multiples of 14) or a fixed ``(H, W)``.
        precision: ``"fp32"`` (exact), ``"fp16"`` (fp16 weights) or ``"int8"`` (post-training quantisation on
            the images in ``calibration``, default the packaged examples; accuracy written to
            ``<out>.accuracy.json``).

    Returns an :class:`ExportResult`. Raises ``ExportError`` when the file does not validate (nothing is left
    under ``out``), ``ValueError`` for bad arguments, ``ImportError`` naming the ``export`` extra.
    """
    fmt = format_for(out, format)
    if precision not in PRECISIONS:
        raise ValueError(f"expected precision one of {list(PRECISIONS)}, got {precision!r}")
    input_size = check_input_size(input_size)
    name = None
    if not isinstance(source, DepthAnythingV2):
        from ..weights.loading import load_model

        name = os.fspath(source)
        source = load_model(source, encoder=encoder, max_depth=max_depth)
    info = model_info(source, input_size, precision, source=name)
    out = Path(out)
    accuracy = None
    if precision == "int8":
        from .quantize import export_int8

        accuracy = export_int8(source, out, fmt, info=info, calibration_dir=calibration)
    elif fmt == "onnx":
        from .onnx import export_onnx

        export_onnx(source, out, input_size=input_size, precision=precision, info=info, validate=validate)
    else:
        from .openvino import export_openvino

        export_openvino(source, out, input_size=input_size, precision=precision, info=info, validate=validate)
    files = [out]
    if fmt == "openvino":
        files.append(out.with_suffix(".bin"))
    if out.with_name(out.name + ".data").exists():
        files.append(out.with_name(out.name + ".data"))
    if accuracy is not None:
        files.append(out.with_name(out.name + ".accuracy.json"))
    return ExportResult(out, files, info, accuracy)
