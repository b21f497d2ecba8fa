"""Helpers for the app tests: tiny random predictors, small generated images, a recording predictor."""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from depth_anything_v2.inference.predictor import DepthPredictor
from model_factory import random_model

#: 4 x 5 tokens for a 3:4 image: fast on 2 cores.
INPUT_SIZE = 56
EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "depth_anything_v2" / "app" / "examples"


def tiny_model(max_depth: float | None = None, seed: int = 0) -> torch.nn.Module:
    """A random tiny model whose output varies over the image."""
    return random_model("tiny", max_depth, seed)


def tiny_predictor(max_depth: float | None = None) -> DepthPredictor:
    return DepthPredictor(tiny_model(max_depth), input_size=INPUT_SIZE, device="cpu")


def image_bytes(height: int = 48, width: int = 64, seed: int = 0, fmt: str = "PNG", **save_kwargs) -> bytes:
    """A smooth random RGB image encoded as ``fmt``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256], axis=2)
    noise = rng.integers(0, 30, (height, width, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(buf, format=fmt, **save_kwargs)
    return buf.getvalue()


class RecordingPredictor:
    """Wraps a predictor; records how many calls overlap (the service must serialise them)."""

    def __init__(self, inner: DepthPredictor, delay_s: float = 0.0) -> None:
        self.inner = inner
        self.model = inner.model
        self.delay_s = delay_s
        self.calls = 0
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    @property
    def is_metric(self) -> bool:
        return self.inner.is_metric

    def predict(self, image):
        with self._lock:
            self.calls += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.delay_s)  # widens the window in which unserialised calls would overlap
            return self.inner.predict(image)
        finally:
            with self._lock:
                self.active -= 1


def one_torch_thread():
    """Generator for a module fixture: 1 intra-op thread while the module runs (tiny models gain nothing from 2,
    and on a loaded machine 2 threads wait on each other), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_clip(path: Path, frames: int, width: int = 64, height: int = 48, fps: float = 10.0) -> Path:
    """A small MPEG-4 clip (OpenCV) of moving gradients."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    for i in range(frames):
        gray = np.broadcast_to((x + 20 * i) % 256, (height, width)).astype(np.uint8)
        writer.write(np.ascontiguousarray(np.stack([gray, 255 - gray, gray // 2], axis=2)))
    writer.release()
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` but has no pixel data (a decoder would fail; the header is enough)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
