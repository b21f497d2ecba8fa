"""The NN archive validates with luxonis-ml and its ONNX equals the torch model in ONNX Runtime at its size."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
import torch

from depth_anything_v2.export import export_model
from depth_anything_v2.oak.archive import build_nn_archive

pytest.importorskip("luxonis_ml")
ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow  # one more export (~7-30 s on 2 cores: tracing) and xz compression

H, W = 42, 70  # not square and not the trained grid: the position-embedding resize is in the graph


@pytest.fixture(scope="module")
def exported(tmp_path_factory, make_model):
    """``depth-anything export --format nnarchive``'s path: the project's fixed-size ONNX, batch 1, archived."""
    model = make_model("tiny")
    x = torch.randn(1, 3, H, W)
    folder = tmp_path_factory.mktemp("archive")
    result = export_model(model, folder / "da2.tar.xz", input_size=(H, W))
    with tarfile.open(result.path) as tar:
        (folder / "da2.onnx").write_bytes(tar.extractfile("da2.onnx").read())
    return model, x, result.path, folder / "da2.onnx"


def test_archive_validates_and_runs(exported):
    from luxonis_ml.nn_archive import Config, is_nn_archive

    model, x, archive, _ = exported
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


def test_archive_refuses_bad_sizes(exported, tmp_path, make_model):
    _, _, _, onnx_path = exported
    with pytest.raises(ValueError, match="multiple of 14"):
        build_nn_archive(onnx_path, tmp_path / "a.tar.xz", input_size=(500, 518))
    with pytest.raises(ValueError, match=r"expected input shape \[1, 3, 392, 518\], got \[1, 3, 42, 70\]"):
        build_nn_archive(onnx_path, tmp_path / "a.tar.xz", input_size=(518, 392))
    with pytest.raises(ValueError, match="an NN archive holds a fixed-size model: expected input_size"):
        export_model(make_model("tiny"), tmp_path / "b.tar.xz")
    assert not list(tmp_path.iterdir())
