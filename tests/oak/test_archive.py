"""The NN archive validates with luxonis-ml and its ONNX equals the torch model in ONNX Runtime at its size."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
import torch

from depth_anything_v2.oak.archive import build_nn_archive

pytest.importorskip("luxonis_ml")
ort = pytest.importorskip("onnxruntime")

W, H = 518, 518  # the trained 37 x 37 token grid: the legacy exporter traces no position-embedding resize


@pytest.fixture(scope="module")
def exported(tmp_path_factory, make_model):
    # Until the project's exporter (depth_anything_v2.export) lands, export with torch.onnx at a fixed size.
    model = make_model("tiny")
    x = torch.randn(1, 3, H, W)
    path = tmp_path_factory.mktemp("onnx") / "da2.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["image"], output_names=["depth"], dynamo=False)
    return model, x, path


@pytest.mark.slow  # ~10 s on a busy 2-core runner: ONNX export and xz compression
def test_archive_validates_and_runs(exported, tmp_path):
    from luxonis_ml.nn_archive import Config, is_nn_archive

    model, x, onnx_path = exported
    archive = build_nn_archive(onnx_path, tmp_path / "da2.tar.xz", input_size=(W, H))
    assert archive.is_file() and is_nn_archive(archive)
    with tarfile.open(archive) as tar:
        cfg = json.load(tar.extractfile("config.json"))
        onnx_bytes = tar.extractfile("da2.onnx").read()
    Config(**cfg)
    inp = cfg["model"]["inputs"][0]
    assert inp["shape"] == [1, 3, H, W] and inp["layout"] == "NCHW"
    assert inp["preprocessing"]["mean"] == pytest.approx([0.485 * 255, 0.456 * 255, 0.406 * 255])
    assert inp["preprocessing"]["scale"] == pytest.approx([0.229 * 255, 0.224 * 255, 0.225 * 255])
    assert cfg["model"]["heads"][0]["parser"] == "MapOutputParser"
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        ref = model(x).numpy()
    assert out.shape == ref.shape == (1, H, W)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))


def test_archive_refuses_bad_sizes(exported, tmp_path):
    _, _, onnx_path = exported
    with pytest.raises(ValueError, match="multiple of 14"):
        build_nn_archive(onnx_path, tmp_path / "a.tar.xz", input_size=(500, 518))
    with pytest.raises(ValueError, match=r"expected input shape \[1, 3, 392, 518\], got \[1, 3, 518, 518\]"):
        build_nn_archive(onnx_path, tmp_path / "a.tar.xz", input_size=(518, 392))
