"""Tiny exported models, made once per test process and shared by tests/export and tests/inference (an export
takes ~10-30 s on 2 cores, whatever the model size: it is tracing, not arithmetic)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model_factory import random_model

#: Five input sizes (H, W), non-square both ways, one with a 37-token side (518) where runtimes take shortcuts.
SIZES = ((518, 518), (518, 686), (686, 518), (392, 700), (266, 518))
METRIC_MAX_DEPTH = 20.0


@functools.cache
def workdir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="da2-export-tests-"))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    return d


@functools.cache
def tiny_checkpoint() -> Path:
    path = workdir() / "tiny.pth"
    torch.save(random_model("tiny").state_dict(), path)
    return path


@functools.cache
def relative_onnx() -> Path:
    """The tiny relative model, exported through the CLI from a .pth (dynamic shapes, validated)."""
    from depth_anything_v2.cli import main

    path = workdir() / "tiny.onnx"
    assert main(["export", "--weights", str(tiny_checkpoint()), "--format", "onnx", "--out", str(path)]) == 0
    return path


@functools.cache
def metric_ir() -> Path:
    """The tiny metric model as an OpenVINO IR, through the Python API."""
    from depth_anything_v2.export import export_model

    path = workdir() / "tiny_metric.xml"
    export_model(random_model("tiny", max_depth=METRIC_MAX_DEPTH), path)
    return path


@functools.cache
def image_folder() -> Path:
    """Three small photos-like images (smooth gradients plus noise) for calibration and predict tests."""
    folder = workdir() / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(((42, 56), (56, 42), (48, 64))):
        y, x = np.mgrid[0:h, 0:w]
        rgb = np.stack([x * 255 // w, y * 255 // h, rng.integers(0, 256, (h, w))], -1).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"{i}.png")
    return folder


def relative_difference(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out - ref).abs().max() / (ref.max() - ref.min())).item()
