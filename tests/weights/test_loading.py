"""Every form ``load_model`` accepts, and every bad input it must reject clearly."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from depth_anything_v2 import CheckpointError, load_model
from depth_anything_v2.weights.checkpoints import reference_to_hf, save_hf, save_reference


@pytest.fixture
def tiny_sd(make_model):
    return make_model("tiny").state_dict()


def _same_weights(model, sd):
    msd = model.state_dict()
    return set(msd) == set(sd) and all(torch.equal(msd[k], sd[k]) for k in sd)


def test_pth(tmp_path, tiny_sd):
    torch.save(tiny_sd, tmp_path / "m.pth")
    model = load_model(tmp_path / "m.pth")
    assert model.encoder == "tiny" and not model.is_metric and not model.training
    assert _same_weights(model, tiny_sd)


def test_safetensors(tmp_path, tiny_sd):
    save_reference(tiny_sd, tmp_path / "m.safetensors")
    assert _same_weights(load_model(tmp_path / "m.safetensors"), tiny_sd)


@pytest.mark.parametrize("max_depth", [None, 20.0])
def test_transformers_directory_and_its_weights_file(tmp_path, tiny_sd, max_depth):
    save_hf(tiny_sd, tmp_path / "hf", "tiny", max_depth)
    for source in (tmp_path / "hf", tmp_path / "hf" / "model.safetensors"):
        model = load_model(source)
        assert model.max_depth == max_depth
        assert _same_weights(model, tiny_sd)


def test_transformers_weights_without_mask_token_or_config(tmp_path, tiny_sd):
    from safetensors.torch import save_file

    hf = reference_to_hf(tiny_sd)
    del hf["backbone.embeddings.mask_token"]
    (tmp_path / "hf").mkdir()
    save_file({k: v.contiguous() for k, v in hf.items()}, tmp_path / "hf" / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"config\.json"):
        load_model(tmp_path / "hf")
    save_hf(tiny_sd, tmp_path / "ref", "tiny", None)
    (tmp_path / "hf" / "config.json").write_bytes((tmp_path / "ref" / "config.json").read_bytes())
    model = load_model(tmp_path / "hf")  # the unused mask token is filled with zeros
    assert torch.equal(model.pretrained.mask_token, torch.zeros_like(model.pretrained.mask_token))


@pytest.mark.parametrize("wrapper", ["model", "state_dict", "model_state_dict"])
def test_training_checkpoint_with_prefixes(tmp_path, tiny_sd, wrapper):
    wrapped = {f"module._orig_mod.{k}": v for k, v in tiny_sd.items()}
    torch.save({wrapper: wrapped, "step": 10, "optimizer": {"lr": [1e-5]}}, tmp_path / "train.pt")
    assert _same_weights(load_model(tmp_path / "train.pt"), tiny_sd)


def test_metric_max_depth_from_published_file_name_and_override(tmp_path, tiny_sd):
    for ds, expected in (("hypersim", 20.0), ("vkitti", 80.0)):
        path = tmp_path / f"depth_anything_v2_metric_{ds}_vits.pth"
        torch.save(tiny_sd, path)
        assert load_model(path).max_depth == expected
        assert load_model(path, max_depth=10).max_depth == 10.0
    plain = tmp_path / "anything.pth"
    torch.save(tiny_sd, plain)
    assert load_model(plain, max_depth=5).max_depth == 5.0
    assert load_model(plain).max_depth is None


def test_encoder_mismatch_names_both(tmp_path, tiny_sd):
    torch.save(tiny_sd, tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match=r"encoder 'tiny' .*embedding dim 32.*encoder 'vits' was requested"):
        load_model(tmp_path / "m.pth", encoder="vits")


def test_vitb_file_loaded_as_vits_names_both(tmp_path):
    # the encoder is identified from the stored shapes (embedding dim and block count), so a stub will do
    sd = {"pretrained.pos_embed": torch.zeros(1, 1370, 768)}
    sd |= {f"pretrained.blocks.{i}.norm1.weight": torch.zeros(768) for i in range(12)}
    torch.save(sd, tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match=r"'vitb'.*768.*'vits'.*384"):
        load_model(tmp_path / "b.pth", encoder="vits")


def test_wrong_shapes_and_missing_keys(tmp_path, tiny_sd):
    sd = dict(tiny_sd)
    sd["depth_head.scratch.output_conv1.weight"] = torch.zeros(3, 3, 3, 3)
    torch.save(sd, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match=r"output_conv1\.weight: expected \(8, 16, 3, 3\), found \(3, 3, 3, 3\)"):
        load_model(tmp_path / "shape.pth")
    sd = dict(tiny_sd)
    del sd["depth_head.scratch.refinenet1.out_conv.bias"]
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "keys.pth")
    with pytest.raises(
        CheckpointError, match=r"1 missing \[depth_head.scratch.refinenet1.out_conv.bias\], 1 unexpected"
    ):
        load_model(tmp_path / "keys.pth")


def test_corrupt_empty_and_missing_files(tmp_path, tiny_sd):
    torch.save(tiny_sd, tmp_path / "good.pth")
    data = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pth").write_text("hello, not a checkpoint")
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 64)
    for name in ("truncated.pth", "text.pth", "bad.safetensors"):
        with pytest.raises(CheckpointError, match="not a"):
            load_model(tmp_path / name)
    with pytest.raises(CheckpointError, match="empty file"):
        load_model(tmp_path / "empty.pth")
    with pytest.raises(FileNotFoundError, match="neither an existing file"):
        load_model(tmp_path / "nope.pth")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(CheckpointError, match=r"config\.json and one of"):
        load_model(tmp_path / "emptydir")
    torch.save({"epoch": 3}, tmp_path / "nostate.pth")
    with pytest.raises(CheckpointError, match="expected a state dict of tensors"):
        load_model(tmp_path / "nostate.pth")


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"pretrained.pos_embed": torch.zeros(1), "x": _Evil(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refused to load"):
        load_model(tmp_path / "evil.pth")
    assert not marker.exists()


def test_unknown_name(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"published model name \(vits, vitb, vitl, metric-hypersim-vits"):
        load_model("vitx")


def _fake_hub_cache(cache: Path, repo_id: str, filename: str, payload: Path) -> None:
    """The standard Hugging Face cache layout: models--org--name/{refs/main, snapshots/<rev>/<file>}."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    rev = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    (repo / "snapshots" / rev).mkdir(parents=True)
    (repo / "snapshots" / rev / filename).write_bytes(payload.read_bytes())


def _run_offline(code: str, hf_home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_published_name_from_cache_and_offline_error(tmp_path, make_model):
    # A real-sized vits file in a fake HF_HOME cache, resolved by name with HF_HUB_OFFLINE=1 (a subprocess, since
    # huggingface_hub reads both variables at import).
    model = make_model("vits")
    torch.save(model.state_dict(), tmp_path / "w.pth")
    hf_home = tmp_path / "hf_home"
    _fake_hub_cache(
        hf_home / "hub", "depth-anything/Depth-Anything-V2-Small", "depth_anything_v2_vits.pth", tmp_path / "w.pth"
    )
    _fake_hub_cache(
        hf_home / "hub",
        "depth-anything/Depth-Anything-V2-Metric-VKITTI-Small",
        "depth_anything_v2_metric_vkitti_vits.pth",
        tmp_path / "w.pth",
    )
    x = np.random.default_rng(0).standard_normal((1, 3, 28, 28)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).numpy()
    np.save(tmp_path / "expected.npy", expected)
    code = f"""
        import numpy as np, torch
        from depth_anything_v2 import load_model
        m = load_model("vits")
        with torch.inference_mode():
            out = m(torch.from_numpy(np.load({str(tmp_path / "x.npy")!r}))).numpy()
        assert np.array_equal(out, np.load({str(tmp_path / "expected.npy")!r})), "weights differ"
        assert m.encoder == "vits" and m.max_depth is None
        assert load_model("metric-vkitti-vits").max_depth == 80.0
        print("OK")
    """
    done = _run_offline(code, hf_home)
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr
    # not cached (vitb): the error names the model, the file, the repo, and the way out
    done = _run_offline("from depth_anything_v2 import load_model; load_model('vitb')", hf_home)
    assert done.returncode != 0
    for needle in (
        "'vitb'",
        "depth_anything_v2_vitb.pth",
        "depth-anything/Depth-Anything-V2-Base",
        "HF_HUB_OFFLINE",
        "--weights",
    ):
        assert needle in done.stderr, needle


def test_unreachable_hub_fails_at_once_with_one_message(tmp_path, monkeypatch, caplog):
    # Not offline, but the Hub cannot be reached (a closed local port): one attempt and one clear error, not
    # hf_hub_download's five retries (~25 s) with every warning logged twice.
    import socket

    import huggingface_hub.constants

    from depth_anything_v2.weights.loading import ModelUnavailableError, resolve_published

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(
        ModelUnavailableError, match=r"'vits' needs depth_anything_v2_vits\.pth .* could not be reached"
    ):
        resolve_published("vits")
    assert not [r for r in caplog.records if "Retry" in r.getMessage()]
    with pytest.raises(ModelUnavailableError, match="does not download models"):
        resolve_published("vits", download=False)


def test_hf_directory_config_errors(tmp_path, tiny_sd):
    save_hf(tiny_sd, tmp_path / "hf", "tiny", 20.0)
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    cfg["depth_estimation_type"] = "disparity"
    (tmp_path / "hf" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="expected depth_estimation_type 'relative' or 'metric', got 'disparity'"):
        load_model(tmp_path / "hf")
    (tmp_path / "hf" / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match=r"not a readable config\.json"):
        load_model(tmp_path / "hf")


def test_training_checkpoint_records_its_max_depth(tmp_path, tiny_sd):
    ckpt = {"format": "depth_anything_v2.training/1", "encoder": "tiny", "max_depth": 80.0, "step": 5}
    torch.save({**ckpt, "model": {f"module.{k}": v for k, v in tiny_sd.items()}}, tmp_path / "metric.pt")
    model = load_model(tmp_path / "metric.pt")
    assert model.max_depth == 80.0 and _same_weights(model, tiny_sd)
    torch.save({**ckpt, "max_depth": None, "model": tiny_sd}, tmp_path / "relative.pt")
    assert load_model(tmp_path / "relative.pt").max_depth is None
    torch.save({**ckpt, "encoder": "vitl", "model": tiny_sd}, tmp_path / "liar.pt")
    with pytest.raises(CheckpointError, match="says encoder 'vitl', but its tensors are 'tiny'"):
        load_model(tmp_path / "liar.pt")
