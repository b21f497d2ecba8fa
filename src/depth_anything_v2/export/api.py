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

FORMATS = {"onnx": ".onnx", "openvino": ".xml", "nnarchive": ".tar.xz"}
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class ExportResult:
    """What was written: ``files`` (the model file first), its metadata, and for int8 the accuracy report."""

    path: Path
    files: list[Path]
    info: ModelInfo
    accuracy: object | None = None


def format_for(out: str | os.PathLike, fmt: str | None) -> str:
    name = Path(out).name.lower()
    if fmt is None:
        for fmt_name, ext in FORMATS.items():
            if name.endswith(ext):
                return fmt_name
        raise ValueError(f"cannot tell the format from {out!r}: expected a .onnx, .xml or .tar.xz path, or format=...")
    if fmt not in FORMATS:
        raise ValueError(f"expected format one of {sorted(FORMATS)}, got {fmt!r}")
    if not name.endswith(FORMATS[fmt]):
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
    """Export a model to ONNX (``.onnx``), OpenVINO IR (``.xml`` + ``.bin``) or a Luxonis NN archive for OAK
    cameras (``.tar.xz``: the fixed-size, batch-1 ONNX plus its ``config.json``; needs ``input_size``).

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
    if fmt == "nnarchive":
        return _export_nn_archive(source, out, input_size, precision, info, validate)
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


def _export_nn_archive(
    model: DepthAnythingV2, out: Path, input_size: tuple[int, int] | None, precision: str, info, validate: bool
) -> ExportResult:
    """The fixed-size ONNX with its batch fixed to 1 (what RVC4 compilers take), packed by
    :func:`depth_anything_v2.oak.archive.build_nn_archive` with the preprocessing in its config."""
    import tempfile

    from ..oak.archive import build_nn_archive
    from .onnx import export_onnx

    if input_size is None:
        raise ValueError("an NN archive holds a fixed-size model: expected input_size (H, W), e.g. (392, 518)")
    if precision != "fp32":
        raise ValueError(f"NN archives are exported in fp32 (Luxonis' converter quantises for RVC4), got {precision}")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / (out.name.removesuffix(".tar.xz") + ".onnx")
        export_onnx(model, onnx_path, input_size=input_size, precision="fp32", info=info, validate=validate)
        _fix_batch(onnx_path)
        build_nn_archive(onnx_path, out, input_size=(input_size[1], input_size[0]))  # the archive speaks W x H
    return ExportResult(out, [out], info, None)


def _fix_batch(path: Path) -> None:
    """Turn every symbolic dimension of the graph (the batch) into 1, in place."""
    import onnx

    model = onnx.load(str(path))
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                dim.dim_value = 1
    onnx.save(model, str(path))
