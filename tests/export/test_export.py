"""ONNX and OpenVINO exports of the tiny model: exact at five sizes, both heads, batch 2, metadata, fp16, int8."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from depth_anything_v2.export import ExportError, ModelInfo
from depth_anything_v2.export.onnx import save_proto, to_fp16
from depth_anything_v2.export.quantize import quantize_file
from depth_anything_v2.export.validate import TOLERANCE, validate_export
from depth_anything_v2.inference.backends import OnnxRuntimeBackend, OpenVINOBackend
from export_fixtures import METRIC_MAX_DEPTH, SIZES, image_folder, metric_ir, relative_difference, relative_onnx
from model_factory import random_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")


def _check_sizes(backend, model, sizes=SIZES, tol=1e-4):
    generator = torch.Generator().manual_seed(1)
    for h, w in sizes:
        x = torch.randn(2, 3, h, w, generator=generator)
        with torch.inference_mode():
            ref = model(x)
        out = backend(x)
        assert out.shape == (2, h, w) and out.dtype == torch.float32
        assert relative_difference(out, ref) <= tol, (h, w)


@pytest.mark.parametrize("runtime", [OnnxRuntimeBackend, OpenVINOBackend])
def test_relative_onnx_equals_torch_at_five_sizes(runtime, one_torch_thread):
    # one .onnx file, any multiple of 14, batch 2, in both runtimes (OpenVINO reads .onnx too)
    _check_sizes(runtime(relative_onnx()), random_model("tiny"))


def test_metric_ir_equals_torch_at_five_sizes(one_torch_thread):
    model = random_model("tiny", max_depth=METRIC_MAX_DEPTH)
    backend = OpenVINOBackend(metric_ir())
    assert metric_ir().with_suffix(".bin").stat().st_size > 4 * sum(p.numel() for p in model.parameters()) * 0.9
    _check_sizes(backend, model)
    out = backend(torch.randn(1, 3, 70, 98))
    assert out.min() > 0 and out.max() < METRIC_MAX_DEPTH  # Sigmoid x max_depth, not a ReLU head


def test_metadata_is_read_back():
    rel, met = OnnxRuntimeBackend(relative_onnx()).info, OpenVINOBackend(metric_ir()).info
    assert (rel.encoder, rel.kind, rel.max_depth, rel.input_size, rel.precision) == (
        "tiny",
        "disparity",
        None,
        None,
        "fp32",
    )
    assert (met.kind, met.max_depth, met.patch_multiple) == ("metric", METRIC_MAX_DEPTH, 14)
    props = {p.key: p.value for p in onnx.load(relative_onnx()).metadata_props}
    assert (
        props["depth_anything_v2.mean"] == "0.485,0.456,0.406" and props["depth_anything_v2.std"] == "0.229,0.224,0.225"
    )
    assert props["depth_anything_v2.license"] == "unknown" and props["depth_anything_v2.version"]
    assert ModelInfo.from_props(props) == rel


def test_fp16_is_finite_and_within_tolerance(tmp_path, one_torch_thread):
    path = tmp_path / "fp16.onnx"
    save_proto(to_fp16(onnx.load(relative_onnx())), path)
    fp16 = onnx.load(path)
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in fp16.graph.initializer)
    _check_sizes(OnnxRuntimeBackend(path), random_model("tiny"), sizes=SIZES[:2], tol=TOLERANCE["fp16"])


def test_int8_writes_a_finite_model_and_an_accuracy_report(tmp_path):
    model = random_model("tiny")
    info = OnnxRuntimeBackend(relative_onnx()).info
    out = tmp_path / "int8.onnx"
    acc = quantize_file(model, relative_onnx(), out, "onnx", info=info, calibration_dir=image_folder(), input_size=56)
    report = json.loads((tmp_path / "int8.onnx.accuracy.json").read_text())
    assert report["images"] == 1 and report["calibration_images"] == 2
    assert 0 <= report["abs_rel"] < 0.5 and 0 < report["delta1"] <= 1 and report["abs_rel"] == acc.abs_rel
    backend = OnnxRuntimeBackend(out)
    assert backend.info.precision == "int8"
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(out).graph.node)
    assert torch.isfinite(backend(torch.randn(1, 3, 56, 70))).all()


def test_validation_rejects_a_file_that_does_not_match(one_torch_thread):
    with pytest.raises(ExportError, match=r"does not match PyTorch in onnxruntime at 518x392: max difference"):
        validate_export(random_model("tiny", seed=1), relative_onnx())


def test_backend_rejects_wrong_input_sizes():
    backend = OnnxRuntimeBackend(relative_onnx())
    with pytest.raises(ValueError, match=r"expected height and width divisible by 14, got \(50, 56\)"):
        backend(torch.zeros(1, 3, 50, 56))
    with pytest.raises(ValueError, match=r"expected input of shape \(B, 3, H, W\), got \(3, 56, 56\)"):
        backend(torch.zeros(3, 56, 56))
    assert np.isfinite(backend(torch.zeros(1, 3, 14, 14)).numpy()).all()


@pytest.mark.slow  # one more export (~10-30 s): the fixed-size file the OAK / NPU paths use
def test_fixed_size_export(tmp_path, one_torch_thread):
    from depth_anything_v2.export import export_onnx

    model = random_model("tiny", max_depth=METRIC_MAX_DEPTH)
    backend = OnnxRuntimeBackend(export_onnx(model, tmp_path / "fixed.onnx", input_size=(56, 70)))
    assert backend.info.input_size == (56, 70) and backend.info.kind == "metric"
    _check_sizes(backend, model, sizes=[(56, 70)])
    with pytest.raises(ValueError, match=r"exported for input size 56x70 only, got 70x56"):
        backend(torch.zeros(1, 3, 70, 56))
