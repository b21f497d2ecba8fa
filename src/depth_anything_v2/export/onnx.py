"""ONNX export: one file with dynamic batch, height and width (or a fixed size), metadata inside.

    from depth_anything_v2 import load_model
    from depth_anything_v2.export import export_onnx
    export_onnx(load_model("vits"), "depth_anything_v2_vits.onnx")                       # any multiple of 14
    export_onnx(load_model("vits"), "vits_518x686.onnx", input_size=(518, 686))          # one size (NPUs, OAK)

The graph comes from ``torch.export`` (the dynamo ONNX exporter). Under export the encoder resizes its
position embedding with two bicubic interpolation matrices built from the symbolic grid size
(``modeling.dinov2.bicubic_matrix``), so the reference's offset scale factor lives inside the graph and every
runtime computes the same numbers at every size. The CPU fast paths of the eager model (oneDNN fused linears, the
DPT head's row bands) already step aside under ``torch.compiler.is_compiling()``, which is true during export, so
the graph holds plain ``linear`` / ``interpolate`` ops; the input is checked for multiples of 14 by the model
itself, which the dynamic shapes (``14 * grid``) satisfy symbolically.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import warnings
from pathlib import Path

import torch

from ..configs import PATCH_SIZE
from ..dpt import DepthAnythingV2
from .metadata import INPUT_NAME, OUTPUT_NAME, ExportError, ModelInfo, weights_license

logger = logging.getLogger(__name__)

OPSET = 18
#: Ops computed in fp32 in an fp16 export: normalisations and reductions overflow or lose too much in fp16.
FP16_KEEP_FP32 = ["LayerNormalization", "ReduceMean", "Pow", "Sqrt", "Div", "Softmax", "Resize", "Sigmoid", "Einsum"]


def require(module: str, what: str = "export"):
    """Import an optional runtime package, or raise ``ImportError`` naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"{what} needs the Python package {module.split('.')[0]!r}, which is not installed; "
            "install it with: pip install 'depth-anything-v2[export]'"
        ) from e


def check_input_size(input_size: tuple[int, int] | None) -> tuple[int, int] | None:
    if input_size is None:
        return None
    h, w = (int(s) for s in input_size)
    if h <= 0 or w <= 0 or h % PATCH_SIZE or w % PATCH_SIZE:
        raise ValueError(f"expected an input size (H, W) of positive multiples of {PATCH_SIZE}, got {input_size}")
    return h, w


def model_info(model: DepthAnythingV2, input_size=None, precision="fp32", source=None) -> ModelInfo:
    return ModelInfo(
        encoder=model.encoder,
        max_depth=model.max_depth,
        license=weights_license(model.encoder, source),
        input_size=check_input_size(input_size),
        precision=precision,
    )


def _cpu_fp32(model: DepthAnythingV2) -> DepthAnythingV2:
    p = next(model.parameters())
    if p.device.type == "cpu" and p.dtype == torch.float32 and not model.training:
        return model
    return copy.deepcopy(model).to("cpu", torch.float32).eval()


def to_onnx_proto(model: DepthAnythingV2, input_size: tuple[int, int] | None = None):
    """The ``onnx.ModelProto`` of ``model`` (fp32): input ``image`` (B, 3, H, W), output ``depth`` (B, H, W).

    With ``input_size=None`` batch, height and width are dynamic (height and width multiples of 14);
    otherwise the size is fixed and the batch stays dynamic.
    """
    require("onnxscript")
    model = _cpu_fp32(model)
    if input_size is None:
        batch = torch.export.Dim("batch", min=1, max=1024)
        gh, gw = torch.export.Dim("grid_h", min=1, max=1024), torch.export.Dim("grid_w", min=1, max=1024)
        shapes = ({0: batch, 2: PATCH_SIZE * gh, 3: PATCH_SIZE * gw},)
        x = torch.randn(2, 3, 19 * PATCH_SIZE, 26 * PATCH_SIZE)  # batch 2 and H != W: nothing specialises
    else:
        shapes = ({0: torch.export.Dim("batch", min=1, max=1024)},)
        x = torch.randn(2, 3, *input_size)
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(
            model,
            (x,),
            dynamo=True,
            dynamic_shapes=shapes,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=OPSET,
            optimize=True,
            verbose=False,
        )
    proto = program.model_proto
    for node in proto.graph.node:  # per-node stack traces and FX dumps: local paths, and megabytes on vitl
        del node.metadata_props[:]
    return proto


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter's chatter that says nothing about this model (torchvision ops it skips, a deprecation inside
    torch.export) stays out of the user's terminal."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec", category=FutureWarning)
            yield
    finally:
        registration.setLevel(level)


def to_fp16(proto):
    """Weights and most activations in fp16; inputs/outputs and :data:`FP16_KEEP_FP32` ops stay fp32."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(proto, keep_io_types=True, op_block_list=FP16_KEEP_FP32)


def set_metadata(proto, info: ModelInfo) -> None:
    props = info.to_props()
    kept = [p for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for k, v in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "depth-anything-v2"
    proto.doc_string = f"Depth Anything V2 {info.encoder} ({info.kind}); weights licence: {info.license}"


def save_proto(proto, path: Path) -> None:
    import onnx

    large = proto.ByteSize() > 1_900_000_000  # protobuf's 2 GB limit (vitg): weights go to path + ".data"
    onnx.save_model(proto, path, save_as_external_data=large, location=path.name + ".data" if large else None)


def export_onnx(
    model: DepthAnythingV2,
    path: str | os.PathLike,
    *,
    input_size: tuple[int, int] | None = None,
    precision: str = "fp32",
    info: ModelInfo | None = None,
    validate: bool = True,
) -> Path:
    """Write ``model`` as an ONNX file and return its path.

    Args:
        model: a ``DepthAnythingV2`` (any device/dtype: a CPU fp32 copy is exported).
        path: the ``.onnx`` file to write (atomically: nothing appears under it unless the export validated).
        input_size: ``None`` for dynamic batch, height and width (any multiples of 14), or a fixed ``(H, W)``.
        precision: ``"fp32"`` or ``"fp16"`` (weights in fp16, normalisations and reductions in fp32, fp32 in and
            out). For int8 see :func:`depth_anything_v2.export.export_model`.
        info: metadata to embed; by default derived from the model (encoder, kind, max_depth, licence).
        validate: run the file in ONNX Runtime on two sizes (one for a fixed size) against PyTorch first.

    Raises:
        ExportError: the export failed or its outputs differ from PyTorch's (see :mod:`.validate`).
        ImportError: onnx/onnxscript/onnxruntime missing (names the ``export`` extra).
    """
    from ..io.atomic import atomic_files

    if precision not in ("fp32", "fp16"):
        raise ValueError(f"expected precision 'fp32' or 'fp16' for export_onnx, got {precision!r}")
    input_size = check_input_size(input_size)
    info = info or model_info(model, input_size, precision)
    logger.info("exporting %s to ONNX (%s, %s)", info.encoder, precision, info.input_size or "dynamic size")
    proto = to_onnx_proto(model, input_size)
    if precision == "fp16":
        proto = to_fp16(proto)
    set_metadata(proto, info)
    with atomic_files(path) as tmp:
        save_proto(proto, tmp)
        if validate:
            from .validate import validate_export

            validate_export(model, tmp, input_size=input_size, precision=precision)
    return Path(path)


__all__ = ["ExportError", "export_onnx"]
