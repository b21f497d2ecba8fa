"""``depth-anything predict --tile``: full-resolution tiled outputs, the plan in ``<stem>_tiling.json``, flag errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from depth_anything_v2 import DepthPredictor, Tiling
from depth_anything_v2.cli import main
from model_factory import random_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(random_model("tiny").state_dict(), path)
    return path


def _predict(weights, *args: str) -> int:
    return main(["predict", *args, "--weights", str(weights), "--encoder", "tiny", "--input-size", "56",
                 "--device", "cpu", "--no-progress", "--workers", "1"])  # fmt: skip


def test_tile_writes_full_resolution_outputs_and_the_plan(tmp_path, weights):
    rgb = np.random.default_rng(0).integers(0, 256, (240, 330, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "big.png")
    out = tmp_path / "out"
    assert _predict(weights, str(tmp_path / "big.png"), "--out", str(out), "--tile", "--batch-size", "4",
                    "--format", "npy,png16") == 0  # fmt: skip
    depth = np.load(out / "big.npy")
    assert depth.shape == (240, 330)
    assert np.asarray(Image.open(out / "big_depth16.png")).shape == (240, 330)
    expected = DepthPredictor(random_model("tiny"), input_size=56).predict(rgb, tiling=True, batch_size=4)
    np.testing.assert_allclose(depth, expected.depth, rtol=1e-5, atol=1e-5)
    record = json.loads((out / "big_tiling.json").read_text())
    assert record["source"].endswith("big.png") and record["input_size"] == 56
    assert [p["tile_px"] for p in record["plan"]] == [120, 60] and record["overlap"] == Tiling().overlap


def test_tile_flags_imply_tiling_and_bad_values_are_usage_errors(tmp_path, weights, capsys):
    Image.fromarray(np.zeros((240, 330, 3), np.uint8)).save(tmp_path / "big.png")
    out = tmp_path / "out"
    assert _predict(weights, str(tmp_path / "big.png"), "--out", str(out), "--tile-levels", "1",
                    "--format", "npy") == 0  # fmt: skip
    assert [p["tile_px"] for p in json.loads((out / "big_tiling.json").read_text())["plan"]] == [120]
    assert _predict(weights, str(tmp_path / "big.png"), "--out", str(out), "--tile-overlap", "0.9") == 2
    assert "--tile-overlap: expected overlap in (0, 0.5], got 0.9" in capsys.readouterr().err
