"""Runtime backends behind DepthPredictor and the CLI: same outputs as torch, clear errors (exit 2)."""

from __future__ import annotations

import builtins
from pathlib import Path

import numpy as np
import pytest

from depth_anything_v2.cli import main
from depth_anything_v2.inference.predictor import DepthPredictor
from export_fixtures import METRIC_MAX_DEPTH, image_folder, metric_ir, relative_onnx, tiny_checkpoint
from model_factory import random_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
TensorProto, helper = onnx.TensorProto, onnx.helper


def _predict(weights: Path, out: Path, *extra: str) -> int:
    return main(["predict", str(image_folder()), "--weights", str(weights), "--out", str(out), "--format", "npy",
                 "--input-size", "56", "--device", "cpu", "--no-progress", *extra])  # fmt: skip


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_predict_backend_writes_what_torch_writes(backend, tmp_path, one_torch_thread):
    assert _predict(tiny_checkpoint(), tmp_path / "torch", "--backend", "torch") == 0
    assert _predict(relative_onnx(), tmp_path / backend, "--backend", backend) == 0
    names = sorted(p.name for p in (tmp_path / "torch").iterdir())
    assert names == ["0.npy", "1.npy", "2.npy"] == sorted(p.name for p in (tmp_path / backend).iterdir())
    for name in names:
        ref, out = np.load(tmp_path / "torch" / name), np.load(tmp_path / backend / name)
        assert out.shape == ref.shape and np.abs(out - ref).max() <= 1e-4 * (ref.max() - ref.min())


def test_suffix_picks_the_runtime_and_metadata_the_kind(one_torch_thread):
    onnx_predictor = DepthPredictor.from_pretrained(relative_onnx(), input_size=56)
    ir_predictor = DepthPredictor.from_pretrained(metric_ir(), input_size=56)
    assert (onnx_predictor.backend.name, onnx_predictor.is_metric) == ("onnxruntime", False)
    assert (ir_predictor.backend.name, ir_predictor.model.max_depth) == ("openvino", METRIC_MAX_DEPTH)
    image = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    result = ir_predictor.predict(image)
    torch_result = DepthPredictor(random_model("tiny", max_depth=METRIC_MAX_DEPTH), input_size=56).predict(image)
    assert result.kind == "metric" and result.unit == "m" and result.depth.shape == (30, 50)
    np.testing.assert_allclose(result.depth, torch_result.depth, atol=1e-4 * np.ptp(torch_result.depth))
    with pytest.raises(ValueError, match=r"holds a model with max_depth 20.0, but max_depth=80.0 was given"):
        DepthPredictor.from_pretrained(metric_ir(), max_depth=80.0)


def test_corrupt_onnx_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(relative_onnx().read_bytes()[:1000])
    assert _predict(bad, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert f"cannot open {bad} with ONNX Runtime" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_onnx_of_another_network_exits_2(tmp_path, capsys):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 10])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["logits"])], "classifier", [x], [y])
    other = tmp_path / "classifier.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), other)
    assert _predict(other, tmp_path / "out") == 2
    assert "expected one input 'image' of shape (B, 3, H, W), got input ['N', 10]" in capsys.readouterr().err
    assert _predict(other, tmp_path / "out", "--backend", "openvino") == 2
    assert "expected one input 'image' of shape (B, 3, H, W)" in capsys.readouterr().err


def test_onnx_without_metadata_exits_2(tmp_path, capsys):
    proto = onnx.load(relative_onnx())
    del proto.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(proto, plain)
    assert _predict(plain, tmp_path / "out") == 2
    assert "has no Depth Anything V2 metadata" in capsys.readouterr().err


def test_missing_runtime_names_the_extra(tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name.split(".")[0] == "onnxruntime":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    monkeypatch.delitem(__import__("sys").modules, "onnxruntime", raising=False)
    assert _predict(relative_onnx(), tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "needs the Python package 'onnxruntime'" in err and "pip install 'depth-anything-v2[export]'" in err


def test_export_cli_usage_errors(tmp_path, capsys):
    assert main(["export", "--model", "vits", "--format", "onnx", "--out", str(tmp_path / "m.xml")]) == 2
    assert "expected an output path ending in .onnx for format 'onnx'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["export", "--model", "vits", "--out", str(tmp_path / "m.onnx"), "--input-size", "500x686"])
    assert e.value.code == 2 and "expected HxW with multiples of 14" in capsys.readouterr().err
    (tmp_path / "old.onnx").write_bytes(b"x")
    assert main(["export", "--weights", str(tiny_checkpoint()), "--out", str(tmp_path / "old.onnx")]) == 2
    assert "old.onnx exists; choose another --out or pass --force" in capsys.readouterr().err
    assert main(["export", "--weights", str(tmp_path / "none.pth"), "--out", str(tmp_path / "n.onnx")]) == 2
    assert "cannot export" in capsys.readouterr().err
    assert main(["export", "--weights", str(tiny_checkpoint()), "--out", str(tmp_path / "oak.tar.xz")]) == 2
    assert "--format nnarchive: expected --input-size HxW" in capsys.readouterr().err


def test_a_checkpoint_with_a_runtime_backend_reuses_its_cached_export(tmp_path, monkeypatch, one_torch_thread):
    import shutil

    from depth_anything_v2.export import onnx as export_onnx_module
    from depth_anything_v2.inference import backends

    monkeypatch.setenv("DEPTH_ANYTHING_CACHE", str(tmp_path))
    model = random_model("tiny")
    cached = backends.export_cache_path(model)
    assert cached.parent == tmp_path / "exports" and cached != backends.export_cache_path(random_model("tiny", seed=1))
    cached.parent.mkdir(parents=True)
    shutil.copy(relative_onnx(), cached)  # the same weights, exported by the CLI fixture
    monkeypatch.setattr(export_onnx_module, "export_onnx", lambda *a, **k: pytest.fail("exported again"))
    predictor = DepthPredictor(model, backend="openvino", input_size=56)
    image = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    expected = DepthPredictor(random_model("tiny"), input_size=56).predict(image).depth
    assert predictor.backend.name == "openvino" and predictor.device.type == "cpu"
    np.testing.assert_allclose(predictor.predict(image).depth, expected, atol=1e-4 * np.ptp(expected))
