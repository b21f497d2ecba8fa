"""``depth-anything app`` argument handling (the server itself is exercised in test_api and test_browser)."""

from __future__ import annotations

import importlib.util

import pytest

from depth_anything_v2.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "vitz"], "--model: expected one of vits, vitb, vitl, metric-hypersim-vits"),
        (["--weights", "no/such.pth"], "--weights: no/such.pth: no such file or folder"),
        (["--input-size", "100"], "--input-size: expected a positive multiple of 14, got 100"),
        (["--port", "70000"], "--port: expected 0-65535, got 70000"),
        (["--max-depth", "-1"], "--max-depth: expected > 0 metres, got -1.0"),
        (["--max-upload-mb", "0"], "--max-upload-mb: expected > 0, got 0.0"),
        (["--max-aspect", "0.5"], "--max-aspect: expected >= 1, got 0.5"),
        (["--max-queue", "0"], "--max-queue: expected >= 1, got 0"),
    ],
)
def test_usage_errors_exit_2(argv, message, capsys):
    assert main(["app", *argv]) == 2
    assert message in capsys.readouterr().err


def test_missing_extra_is_a_usage_error_with_the_hint(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    assert main(["app", "--model", "vits"]) == 2
    assert "the app needs gradio: pip install 'depth-anything-v2[app]'" in capsys.readouterr().err


def test_bad_checkpoint_fails_before_serving(tmp_path, capsys):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    assert main(["app", "--weights", str(bad), "--no-ui", "--port", "0"]) == 1
    captured = capsys.readouterr()
    assert "model 'broken.pth' could not be loaded" in captured.err and "serving" not in captured.out


def test_model_not_available_exits_3_like_every_command(tmp_path, monkeypatch, capsys):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    assert main(["app", "--model", "vitb", "--no-ui", "--port", "0"]) == 3
    err = capsys.readouterr().err
    assert "depth-anything app: error: model 'vitb' needs depth_anything_v2_vitb.pth" in err
    assert "`hf download depth-anything/Depth-Anything-V2-Base depth_anything_v2_vitb.pth`" in err


def test_help_documents_the_api(capsys):
    with pytest.raises(SystemExit) as e:
        main(["app", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "POST /api/depth?format=png16|npy" in out and "curl -sS -F image=@photo.jpg" in out
