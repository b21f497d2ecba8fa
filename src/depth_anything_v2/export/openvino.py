"""OpenVINO IR export (``model.xml`` + ``model.bin``), converted from the same ONNX graph as the ONNX export.

    export_openvino(load_model("vits"), "vits.xml")                     # fp32 weights, dynamic shapes
    export_openvino(load_model("vits"), "vits_fp16.xml", precision="fp16")

The position-embedding resize is two matmuls in the graph (not an ONNX ``Resize``, which OpenVINO treats as a
no-op on an axis that keeps its length: REFERENCE section 8), so the IR matches PyTorch at every size.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from ..dpt import DepthAnythingV2
from .metadata import NAMESPACE, ModelInfo
from .onnx import check_input_size, model_info, require, save_proto, set_metadata, to_onnx_proto

logger = logging.getLogger(__name__)


def onnx_to_openvino(onnx_path: Path, info: ModelInfo):
    """An ``openvino.Model`` read from ``onnx_path``, with ``info`` in its rt_info section."""
    ov = require("openvino")
    model = ov.convert_model(os.fspath(onnx_path))
    for key, value in info.to_props().items():
        model.set_rt_info(value, [NAMESPACE, key[len(NAMESPACE) + 1 :]])
    return model


def save_ir(ov_model, path: Path, precision: str) -> None:
    """``ov.save_model``: fp32 weights unless ``precision == "fp16"`` (its default would compress to fp16)."""
    ov = require("openvino")
    ov.save_model(ov_model, os.fspath(path), compress_to_fp16=precision == "fp16")


def export_openvino(
    model: DepthAnythingV2,
    path: str | os.PathLike,
    *,
    input_size: tuple[int, int] | None = None,
    precision: str = "fp32",
    info: ModelInfo | None = None,
    validate: bool = True,
) -> Path:
    """Write ``model`` as an OpenVINO IR (``path`` = ``.xml``; the ``.bin`` goes beside it) and return ``path``.

    ``precision``: ``"fp32"`` (weights kept in fp32) or ``"fp16"`` (weights compressed to fp16). Validated with
    OpenVINO on the CPU at fp32 inference precision, against PyTorch, before anything is moved into place.
    """
    from ..io.atomic import atomic_files

    path = Path(path)
    if path.suffix.lower() != ".xml":
        raise ValueError(f"expected an OpenVINO output path ending in .xml (the .bin goes beside it), got {path}")
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"expected precision 'fp32' or 'fp16' for export_openvino, got {precision!r}")
    input_size = check_input_size(input_size)
    info = info or model_info(model, input_size, precision)
    with tempfile.TemporaryDirectory(prefix="depth-anything-export-") as d:
        onnx_path = Path(d) / "model.onnx"
        proto = to_onnx_proto(model, input_size)
        set_metadata(proto, info)
        save_proto(proto, onnx_path)
        ov_model = onnx_to_openvino(onnx_path, info)
    with atomic_files(path) as tmp:
        save_ir(ov_model, tmp, precision)
        if validate:
            from .validate import validate_export

            validate_export(model, tmp, input_size=input_size, precision=precision, runtime="openvino")
    return path
