"""Two-process training on the CPU (gloo, through torchrun) matches one process with the same global batch, with
labels holding 0-60% invalid pixels (the loss denominators are global, not per rank)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from depth_anything_v2.training.config import from_dict
from depth_anything_v2.training.trainer import train

WORKER = Path(__file__).with_name("ddp_worker.py")


def _config(tmp_path: Path) -> dict:
    return {
        "stage": "teacher",
        "output_dir": str(tmp_path / "single"),
        "seed": 3,
        "model": {"encoder": "tiny"},
        "data": {
            "train": [{"type": "synthetic", "n": 12, "size": [56, 70], "holes": 0.6}],
            "val": [{"type": "synthetic", "n": 2, "size": [56, 70], "seed": 5}],
            "crop_size": 56,
            "num_workers": 0,
        },
        # Adam normalises every gradient, so eps=1e-8 turns rounding-level gradients into full steps of random
        # sign; a larger eps keeps updates proportional to small gradients, so the comparison measures gradients.
        "optim": {"lr_encoder": 1e-3, "lr_decoder": 1e-3, "eps": 1e-3},
        "train": {"batch_size": 4, "max_steps": 3, "log_every": 1, "ckpt_every": 100, "progress": False},
        "val": {"input_size": 56},
    }


def test_two_process_ddp_and_fsdp_match_one_process(tmp_path: Path) -> None:
    config = _config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [str(WORKER), str(tmp_path / "config.json"), str(tmp_path)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # The one-process reference trains meanwhile (the two workers use one thread each).
        single = train(from_dict(config))
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-4000:]

    reference = torch.load(single.final_checkpoint, weights_only=True)
    initial = _initial(config)
    moved = max((reference["model"][k] - v).abs().max().item() for k, v in initial.items())
    assert moved > 1e-3  # training did change the weights
    ref_log = [r for r in single.history if "loss" in r]
    for strategy in ("ddp", "fsdp"):
        run = torch.load(tmp_path / strategy / "final.pt", weights_only=True)
        log = [json.loads(ln) for ln in (tmp_path / strategy / "train_log.jsonl").open()]
        log = [r for r in log if "loss" in r]
        # Step by step, the global batch's loss and gradient norm: equal within float rounding (per-rank
        # denominators differed by ~1% here).
        for a, b in zip(log, ref_log, strict=True):
            assert abs(a["loss"] - b["loss"]) <= 1e-5 * b["loss"], (strategy, a, b)
            assert abs(a["grad_norm"] - b["grad_norm"]) <= 1e-3 * b["grad_norm"], (strategy, a, b)
        assert run["step"] == reference["step"] == 3
        assert sorted(run["model"]) == sorted(reference["model"])
        # The last bias shifts the output, and the loss is shift-invariant: its gradient is zero in exact
        # arithmetic, so its updates are rounding noise, different for any other summation order.
        worst = max(
            (run["model"][k] - reference["model"][k]).abs().max().item()
            for k in reference["model"]
            if k != "depth_head.scratch.output_conv2.2.bias"
        )
        # Same global batch, same samples and augmentations: only float summation order differs. (Giving both
        # ranks the same samples, or not averaging gradients, differs by a sizeable fraction of `moved`.)
        assert worst < 0.01 * moved, f"{strategy}: weights differ by {worst} (training moved them by {moved})"
        # Validation (rank-sharded, gathered in dataset order) reports the same numbers.
        assert abs(run["val"]["metrics"]["abs_rel"] - reference["val"]["metrics"]["abs_rel"]) < 1e-3
        # The full step checkpoint records one RNG/data state per rank.
        full = torch.load(tmp_path / strategy / "checkpoints" / "step_00000003.pt", weights_only=True)
        assert full["world_size"] == 2 and len(full["ranks"]) == 2
        assert full["ranks"][0]["micro_batches"] == 3 * (1 if strategy == "ddp" else 2)


def _initial(config: dict) -> dict[str, torch.Tensor]:
    from depth_anything_v2.training.trainer import build_training_model

    return build_training_model(from_dict(config)).state_dict()
