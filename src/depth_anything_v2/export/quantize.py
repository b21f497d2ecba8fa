"""int8 post-training quantisation, calibrated on images, with its accuracy against fp32 measured.

ONNX: ONNX Runtime's static quantisation (QDQ, per-channel int8 weights, int8 activations of MatMul/Gemm/Conv).
OpenVINO: NNCF (``ModelType.TRANSFORMER``, which keeps the numerically sensitive parts in float).
The images are split: most calibrate, the rest (held out) measure AbsRel and delta1 of the int8 output against
the fp32 model after a least-squares scale and shift, written to ``<out>.accuracy.json``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..dpt import DepthAnythingV2
from ..io.images import IMAGE_EXTENSIONS
from .metadata import INPUT_NAME, ExportError, ModelInfo
from .onnx import require, save_proto, set_metadata, to_onnx_proto

logger = logging.getLogger(__name__)


def default_calibration_dir() -> Path:
    """The packaged example photographs (``depth_anything_v2/app/examples``)."""
    return Path(str(resources.files("depth_anything_v2") / "app" / "examples"))


def calibration_tensors(folder: str | os.PathLike | None, input_size: int | tuple[int, int]) -> list[np.ndarray]:
    """Each image of ``folder`` (sorted) preprocessed as the reference does: float32 ``(1, 3, h, w)``.

    An ``int`` input size is the shorter side (working size per image); an ``(H, W)`` pair is a fixed size.
    """
    from ..inference.transforms import preprocess
    from ..io.images import read_image

    folder = Path(folder) if folder is not None else default_calibration_dir()
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS) if folder.is_dir() else []
    if len(files) < 2:
        raise ValueError(f"expected a folder with at least 2 images for int8 calibration, got {folder} ({len(files)})")
    out = []
    for f in files:
        rgb = read_image(f)
        if isinstance(input_size, int):
            out.append(preprocess(rgb, input_size).numpy())
        else:
            import cv2

            h, w = input_size
            out.append(
                preprocess(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA), min(h, w))[..., :h, :w].numpy()
            )
    return out


def split(tensors: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(calibration, held out): a quarter held out, at least one image."""
    held = max(1, len(tensors) // 4)
    return tensors[:-held], tensors[-held:]


@dataclass
class Accuracy:
    """int8 against fp32 on held-out images, after a least-squares scale and shift: mean AbsRel and delta1
    (fraction with max(p/g, g/p) < 1.25) over pixels where the fp32 output is positive; max difference / range."""

    images: int
    abs_rel: float
    delta1: float
    max_difference: float

    def summary(self) -> str:
        return (
            f"int8 vs fp32 on {self.images} held-out image(s), after scale+shift alignment: AbsRel {self.abs_rel:.4f}, "
            f"delta1 {self.delta1:.4f}, max difference {self.max_difference:.2e} of the range"
        )


def measure_accuracy(model: DepthAnythingV2, run, held_out: list[np.ndarray]) -> Accuracy:
    from ..align.least_squares import fit_scale_shift
    from .validate import max_relative_difference

    abs_rel, delta1, worst = [], [], 0.0
    for x in held_out:
        xt = torch.from_numpy(x)
        with torch.inference_mode():
            ref = model(xt).float()[0].double()
        out = run(xt)[0].double()
        worst = max(worst, max_relative_difference(out, ref))
        valid = ref > 1e-6 * ref.abs().max()
        scale, shift = fit_scale_shift(out, ref, valid)
        aligned = (scale * out + shift)[valid]
        g = ref[valid]
        abs_rel.append(((aligned - g).abs() / g).mean().item())
        ratio = torch.maximum(aligned / g, g / aligned.clamp(min=1e-12))
        delta1.append((ratio < 1.25).double().mean().item())
    return Accuracy(len(held_out), float(np.mean(abs_rel)), float(np.mean(delta1)), worst)


def quantize_onnx(fp32_path: Path, out: Path, calibration: list[np.ndarray]) -> None:
    q = require("onnxruntime.quantization", "int8 export")

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.items = iter(calibration)

        def get_next(self):
            x = next(self.items, None)
            return None if x is None else {INPUT_NAME: x}

    q.quantize_static(
        os.fspath(fp32_path),
        os.fspath(out),
        Reader(),
        quant_format=q.QuantFormat.QDQ,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Gemm", "Conv"],
        activation_type=q.QuantType.QInt8,
        weight_type=q.QuantType.QInt8,
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
    )


def quantize_openvino(ov_model, calibration: list[np.ndarray]):
    nncf = require("nncf", "int8 export")
    return nncf.quantize(
        ov_model,
        nncf.Dataset(calibration),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(calibration),
    )


def export_int8(
    model: DepthAnythingV2,
    out: Path,
    fmt: str,
    *,
    info: ModelInfo,
    calibration_dir: str | os.PathLike | None = None,
    input_size: int = 518,
) -> Accuracy:
    """Write an int8 ``fmt`` (``"onnx"`` or ``"openvino"``) export to ``out`` plus ``<out>.accuracy.json``."""
    with tempfile.TemporaryDirectory(prefix="depth-anything-int8-") as d:
        fp32 = Path(d) / "fp32.onnx"
        proto = to_onnx_proto(model, info.input_size)
        set_metadata(proto, info)
        save_proto(proto, fp32)
        return quantize_file(model, fp32, out, fmt, info=info, calibration_dir=calibration_dir, input_size=input_size)


def quantize_file(
    model: DepthAnythingV2,
    fp32_onnx: Path,
    out: Path,
    fmt: str,
    *,
    info: ModelInfo,
    calibration_dir: str | os.PathLike | None = None,
    input_size: int = 518,
) -> Accuracy:
    """:func:`export_int8` from an fp32 ONNX export of ``model`` that exists already."""
    from ..inference.backends import open_backend
    from ..io.atomic import atomic_files
    from .openvino import onnx_to_openvino, save_ir

    info = ModelInfo(**{**info.__dict__, "precision": "int8"})
    calib, held_out = split(calibration_tensors(calibration_dir, info.input_size or input_size))
    with atomic_files(out) as tmp:
        if fmt == "onnx":
            quantize_onnx(fp32_onnx, tmp, calib)
            import onnx

            q = onnx.load(tmp)
            set_metadata(q, info)  # quantize_static drops metadata_props
            save_proto(q, tmp)
        else:
            save_ir(quantize_openvino(onnx_to_openvino(fp32_onnx, info), calib), tmp, "fp32")
        accuracy = measure_accuracy(model, open_backend(tmp, "auto"), held_out)
        if not np.isfinite([accuracy.abs_rel, accuracy.delta1]).all():
            raise ExportError(f"the int8 model gives non-finite outputs ({accuracy}); nothing was written")
        report = {"format": fmt, "calibration_images": len(calib), **asdict(accuracy), **info.to_props()}
        tmp.with_name(out.name + ".accuracy.json").write_text(json.dumps(report, indent=2) + "\n")
    logger.info("%s", accuracy.summary())
    return accuracy
