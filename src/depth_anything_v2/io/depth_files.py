"""Depth file formats shared by outputs, dataset readers, benchmark readers and metric alignment.

- PFM (Portable Float Map): float32, ``Pf`` grey or ``PF`` colour, rows stored bottom to top, the sign of the
  scale line giving the byte order.
- Hypersim's ``depth_meters`` is the distance along each pixel's ray, not planar depth:
  :func:`hypersim_distance_to_depth` converts it as the reference's metric trainer does.

- 16-bit PNG depth maps as datasets store them (KITTI: 1/256 m, Virtual KITTI 2: cm, folders: mm):
  :func:`read_png16` gives the raw uint16 counts; the caller applies the unit. The toolkit's own 16-bit PNG
  outputs (with their range in a text chunk) are read by :func:`depth_anything_v2.io.outputs.read_depth_png16`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .atomic import atomic_write

#: Hypersim's camera: 886.81 px focal length at its 1024 x 768 images (the reference metric trainer's value).
HYPERSIM_FOCAL_PX = 886.81
HYPERSIM_WIDTH = 1024


class DepthFileError(ValueError):
    """A depth file that is not what its name says (bad header, truncated data)."""


def read_pfm(path: str | Path) -> np.ndarray:
    """Read a grayscale (``Pf``) or colour (``PF``) PFM to float32 ``(H, W)`` / ``(H, W, 3)``, top row first.

    Raises:
        DepthFileError: not a PFM, a malformed size line, or fewer values than the header promises.
    """
    with open(path, "rb") as f:
        header = f.readline().strip()
        if header not in (b"Pf", b"PF"):
            raise DepthFileError(f"{path}: expected a PFM header 'Pf' or 'PF', got {header[:10]!r}")
        dims = f.readline()
        while dims.startswith(b"#") or not dims.strip():  # comments and blank lines some writers add
            if not dims:
                raise DepthFileError(f"{path}: truncated PFM header")
            dims = f.readline()
        match = re.match(rb"^\s*(\d+)\s+(\d+)\s*$", dims)
        if not match:
            raise DepthFileError(f"{path}: malformed PFM size line {dims[:32]!r}")
        width, height = int(match.group(1)), int(match.group(2))
        scale = float(f.readline().strip())
        channels = 3 if header == b"PF" else 1
        data = np.frombuffer(f.read(), dtype="<f4" if scale < 0 else ">f4")
    expected = width * height * channels
    if data.size < expected:
        raise DepthFileError(f"{path}: expected {expected} floats, got {data.size} (truncated file)")
    shape = (height, width, 3) if channels == 3 else (height, width)
    return np.ascontiguousarray(data[:expected].reshape(shape)[::-1]).astype(np.float32)


def write_pfm(path: str | Path, array: np.ndarray) -> None:
    """Write float32 ``(H, W)`` (``Pf``) or ``(H, W, 3)`` (``PF``) as little-endian PFM, atomically."""
    x = np.asarray(array, dtype="<f4")
    if x.ndim not in (2, 3) or (x.ndim == 3 and x.shape[2] != 3):
        raise ValueError(f"expected a map (H, W) or (H, W, 3), got shape {x.shape}")
    header = "PF" if x.ndim == 3 else "Pf"
    with atomic_write(path) as f:
        f.write(f"{header}\n{x.shape[1]} {x.shape[0]}\n-1.0\n".encode("ascii"))  # negative scale = little-endian
        f.write(np.ascontiguousarray(x[::-1]).tobytes())


def hypersim_distance_to_depth(distance_m: np.ndarray, focal_px: float | None = None) -> np.ndarray:
    """Hypersim distance along the ray -> planar depth: ``depth = dist * f / ||(x, y, f)||``, float32.

    ``x, y`` are pixel-centre offsets from the image centre (as the reference's ``hypersim_distance_to_depth``).
    ``focal_px`` defaults to 886.81 px scaled to the array's width (exactly 886.81 at Hypersim's 1024 px).
    """
    distance_m = np.asarray(distance_m)
    height, width = distance_m.shape
    f = HYPERSIM_FOCAL_PX * width / HYPERSIM_WIDTH if focal_px is None else float(focal_px)
    x = np.linspace(-0.5 * width + 0.5, 0.5 * width - 0.5, width, dtype=np.float64)[None, :]
    y = np.linspace(-0.5 * height + 0.5, 0.5 * height - 0.5, height, dtype=np.float64)[:, None]
    return (distance_m * (f / np.sqrt(x * x + y * y + f * f))).astype(np.float32)


def read_png16(path: str | Path, *, strict: bool = True) -> np.ndarray:
    """A single-channel PNG's raw counts as ``(H, W)``: uint16 (``strict``), or also 8-bit and the first channel
    of a colour image (``strict=False``, for folders of user-made depth maps).

    Raises:
        FileNotFoundError: no such file.
        DepthFileError: not a readable image, or (``strict``) not 16-bit single-channel.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise DepthFileError(f"{path}: not a readable PNG")
    if not strict and data.ndim == 3:
        data = data[..., 0]
    if strict and (data.dtype != np.uint16 or data.ndim != 2):
        raise DepthFileError(f"{path}: expected a 16-bit single-channel PNG, got {data.dtype} with shape {data.shape}")
    return data
