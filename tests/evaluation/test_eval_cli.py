import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from depth_anything_v2.cli import main


@pytest.fixture
def tiny_weights(tmp_path) -> Path:
    from depth_anything_v2 import build_model

    torch.manual_seed(0)
    path = tmp_path / "tiny.pth"
    torch.save(build_model("tiny").state_dict(), path)
    return path


@pytest.fixture
def data_root(tmp_path, make_diode, make_da2k) -> Path:
    root = tmp_path / "data"
    make_diode(root / "diode", n_indoors=2, n_outdoor=1)
    make_da2k(root / "da2k")
    return root


def _args(data_root, weights, out, *extra):
    return [
        "eval", "--benchmark", "diode", "da2k", "--data-root", str(data_root), "--weights", str(weights),
        "--input-size", "28", "--device", "cpu", "--out", str(out), "--no-progress", *extra,
    ]  # fmt: skip


def test_cli_end_to_end_writes_json_and_tables(tmp_path, data_root, tiny_weights, capsys):
    out = tmp_path / "results.json"
    assert main(_args(data_root, tiny_weights, out, "--per-image")) == 0
    doc = json.loads(out.read_text())
    assert doc["model"]["weights_sha256"] == hashlib.sha256(tiny_weights.read_bytes()).hexdigest()
    assert doc["model"]["encoder"] == "tiny" and doc["model"]["input_size"] == 28
    assert doc["model"]["prediction"] == "relative disparity" and doc["world_size"] == 1
    diode = doc["benchmarks"]["diode"]
    assert diode["settings"]["alignment"] == "scale_shift_disparity" and diode["settings"]["max_depth"] == 350.0
    assert diode["dataset"]["split"] == "val" and diode["num_evaluated"] == 3 and len(diode["per_image"]) == 3
    assert 0 <= diode["metrics"]["d1"] <= 1 and diode["metrics"]["abs_rel"] > 0
    da2k = doc["benchmarks"]["da2k"]
    assert da2k["num_pairs"] == 5 and set(da2k["per_scene"]) == {"indoor", "outdoor", "underwater"}
    printed = capsys.readouterr().out
    assert "| V2-S (paper) | 0.073 / 0.942 |" in printed
    assert "| **tiny.pth** |" in printed and "## DA-2K" in printed


def test_cli_exit_1_on_corrupt_sample_keeps_results(tmp_path, data_root, tiny_weights, capsys):
    bad = next((data_root / "diode" / "val" / "outdoor").rglob("*.png"))
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "r.json"
    assert main(_args(data_root, tiny_weights, out, "--limit", "3")) == 1
    doc = json.loads(out.read_text())
    assert doc["benchmarks"]["diode"]["num_failed"] == 1 and doc["benchmarks"]["diode"]["num_evaluated"] == 2
    assert "da2k" in doc["benchmarks"]  # the run went on
    err = capsys.readouterr().err
    assert "failed indoors" not in err and "outdoor/scene_00019" in err and "1 sample(s) failed" in err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--benchmark", "middlebury"], "unknown benchmark 'middlebury'"),
        (["--data-root", "/nonexistent/data"], "--data-root /nonexistent/data does not exist"),
        (["--benchmark", "kitti"], "kitti: expected the dataset in"),
        (["--benchmark", "diode", "--alignment", "none"], "alignment 'none' scores predictions as metres"),
        (["--weights", "/nonexistent/w.pth"], "/nonexistent/w.pth"),
        (["--split-file", "x.txt"], "--split-file applies to kitti, hypersim, vkitti2 only"),
    ],
)
def test_cli_usage_errors_exit_2(tmp_path, data_root, tiny_weights, capsys, change, message):
    args = _args(data_root, tiny_weights, tmp_path / "r.json")
    for i in range(0, len(change), 2):
        flag, value = change[i], change[i + 1]
        if flag not in args:
            args += [flag, value]
            continue
        j = args.index(flag)
        if flag == "--benchmark":
            del args[j + 1 : j + 3]
            args.insert(j + 1, value)
        else:
            args[j + 1] = value
    assert main(args) == 2
    assert message in capsys.readouterr().err


def _run(cmd, env):
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def test_torchrun_two_processes_equal_one_process(tmp_path, data_root, tiny_weights):
    """A strided two-process run gathers to exactly the one-process numbers (gloo on CPU)."""
    one = tmp_path / "one.json"
    assert torch.get_num_threads() == 1  # as each torchrun worker (OMP_NUM_THREADS=1): same kernels, same bits
    assert main(_args(data_root, tiny_weights, one, "--per-image")) == 0
    two = tmp_path / "two.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = _run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "depth_anything_v2.cli.eval", *_args(data_root, tiny_weights, two, "--per-image")[1:]],
        env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert b["world_size"] == 2
    for name in ("diode", "da2k"):
        ra, rb = a["benchmarks"][name], b["benchmarks"][name]
        assert rb["world_size"] == 2
        assert rb["per_image"] == ra["per_image"]
        for key in ("metrics", "metrics_pooled", "accuracy", "per_scene", "num_evaluated", "num_pairs"):
            assert rb.get(key) == ra.get(key), (name, key)


def test_the_process_group_is_left_on_success_and_on_error(tmp_path, data_root, tiny_weights, monkeypatch):
    """A torchrun worker that exits without destroying its group can abort at exit; eval always destroys it."""
    from depth_anything_v2 import distributed

    cleaned = []
    monkeypatch.setattr(distributed, "cleanup_distributed", cleaned.append)
    assert main(_args(data_root, tiny_weights, tmp_path / "ok.json")) == 0
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    assert main(_args(data_root, corrupt, tmp_path / "bad.json")) == 2
    assert len(cleaned) == 2 and all(info.world_size == 1 for info in cleaned)
