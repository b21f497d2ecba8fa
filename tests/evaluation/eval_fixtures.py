"""Tiny benchmark fixtures written in each dataset's exact on-disk format (by hand, not by the readers' code)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image


def write_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def write_png16(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert data.dtype == np.uint16
    assert cv2.imwrite(str(path), data)


def write_dpt(path: Path, depth: np.ndarray) -> None:
    """Sintel .dpt as the MPI-Sintel SDK writes it: 'PIEH' float tag, int32 width, int32 height, float32 data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = depth.shape
    with open(path, "wb") as fh:
        fh.write(struct.pack("<f", 202021.25))
        fh.write(struct.pack("<ii", w, h))
        fh.write(depth.astype("<f4").tobytes())


def depth_image(depth: np.ndarray) -> np.ndarray:
    """An RGB image whose red channel encodes depth (so a 'model' can read the ground truth back from it)."""
    red = np.clip(np.round((depth - 1.0) * 50), 0, 255).astype(np.uint8)
    return np.stack([red, 255 - red, np.full_like(red, 7)], axis=-1)


def image_depth(image_rgb: np.ndarray) -> np.ndarray:
    """Inverse of ``depth_image`` (exact on its quantised values)."""
    return 1.0 + image_rgb[..., 0].astype(np.float64) / 50


def ramp_depth(h: int, w: int, seed: int) -> np.ndarray:
    """Depths in [1, 6.1] m exactly representable by ``depth_image`` (multiples of 1/50)."""
    rng = np.random.default_rng(seed)
    return (1.0 + rng.integers(0, 256, size=(h, w)) / 50).astype(np.float32)


@pytest.fixture
def make_diode():
    """DIODE val layout: <root>/val/{indoors,outdoor}/scene_X/scan_Y/<name>.png + _depth.npy + _depth_mask.npy."""

    def make(root: Path, n_indoors: int = 2, n_outdoor: int = 1, size=(28, 42), seed: int = 0) -> Path:
        h, w = size
        k = 0
        for kind, n in (("indoors", n_indoors), ("outdoor", n_outdoor)):
            (root / "val" / kind).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                scan = root / "val" / kind / "scene_00019" / f"scan_{i:05d}"
                scan.mkdir(parents=True, exist_ok=True)
                depth = ramp_depth(h, w, seed + k)
                mask = np.ones((h, w), dtype=np.float32)
                mask[0, :] = 0  # an invalid row
                name = f"00019_{i:05d}_{kind}_000_010"
                write_rgb(scan / f"{name}.png", depth_image(depth))
                np.save(scan / f"{name}_depth.npy", depth[..., None])  # (H, W, 1) as published
                np.save(scan / f"{name}_depth_mask.npy", mask)
                k += 1
        return root

    return make


@pytest.fixture
def make_da2k():
    """DA-2K: annotations.json (image -> pairs of [row, col]) + images in <scene_type>/ folders.

    Images are 28 x 42 with a 'closer to the right' layout: a model predicting disparity = column gets every
    pair right whose closer point has the larger column.
    """

    def make(root: Path, size=(28, 42)) -> dict:
        h, w = size
        ann = {
            "indoor/a.jpg": [
                {"point1": [5, 30], "point2": [5, 10], "closer_point": "point1"},  # right is closer: correct
                {"point1": [3, 2], "point2": [20, 40], "closer_point": "point2"},  # correct
            ],
            "outdoor/b.png": [
                {"point1": [1, 1], "point2": [2, 5], "closer_point": "point1"},  # wrong for disparity = col
            ],
            "underwater/c.png": [
                {"point1": [4, 7], "point2": [9, 7], "closer_point": "point1"},  # tie (same column): wrong
                {"point1": [0, 41], "point2": [27, 0], "closer_point": "point1"},  # correct
            ],
        }
        for key in ann:
            write_rgb(root / key, np.full((h, w, 3), 128, np.uint8))
        (root / "annotations.json").write_text(json.dumps(ann))
        return ann

    return make


def column_disparity(image_rgb: np.ndarray) -> np.ndarray:
    h, w = image_rgb.shape[:2]
    return np.broadcast_to(np.arange(w, dtype=np.float32), (h, w)).copy()
