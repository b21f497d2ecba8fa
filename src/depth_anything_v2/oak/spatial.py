"""Spatial readouts: where a box of the image is, in millimetres, like DepthAI's SpatialLocationCalculator.

For a box ``(x, y, w, h)`` (pixels, top-left corner, width, height) on a metric depth map:

* ``Z`` = the **median** of the valid depths (finite, > 0) inside the box: robust to the flying pixels and
  background that a box around an object always contains (up to half of them), and DepthAI's default
  (``SpatialLocationCalculatorAlgorithm.MEDIAN``);
* ``X = (u - cx) * Z / fx`` and ``Y = (v - cy) * Z / fy`` at the box centre ``(u, v) = (x + (w - 1) / 2,
  y + (h - 1) / 2)``, in the RGB camera frame of the point clouds (OpenCV: x right, y down, z forward).

A box that sticks out of the image is clipped to it; a box entirely outside, or with no valid depth, gives an
error for that frame (:class:`RoiError`) and the other frames go on.

Boxes come from ``--roi x,y,w,h`` (repeatable: the same boxes on every frame) or a JSON file: a list of
boxes for every frame, or an object mapping frame names to lists of boxes (``{"000000": [[10, 20, 30, 40]]}``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..io.pointcloud import Intrinsics

__all__ = ["Roi", "RoiError", "RoiSpec", "SpatialReading", "parse_roi", "read_roi_file", "roi_xyz"]


class RoiError(ValueError):
    """A box cannot be read out (malformed, outside the image, no valid depth); the message says which."""


@dataclass(frozen=True)
class Roi:
    """A box in pixels: top-left ``(x, y)``, width ``w``, height ``h``."""

    x: int
    y: int
    w: int
    h: int

    def __post_init__(self) -> None:
        if self.w < 1 or self.h < 1:
            raise RoiError(f"expected a box with width and height >= 1, got {self.w}x{self.h}")

    def __str__(self) -> str:
        return f"{self.x},{self.y},{self.w},{self.h}"


def parse_roi(text: str) -> Roi:
    """``"x,y,w,h"`` -> :class:`Roi`; raises :class:`RoiError` naming the text."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) != 4:
            raise ValueError
        return Roi(*(int(p) for p in parts))
    except ValueError:
        raise RoiError(f"expected a box 'x,y,w,h' (integers, w and h >= 1), got {text!r}") from None


@dataclass(frozen=True)
class RoiSpec:
    """Boxes per frame: ``every`` on every frame, plus ``per_frame[name]`` for named frames."""

    every: tuple[Roi, ...] = ()
    per_frame: dict[str, tuple[Roi, ...]] | None = None

    def boxes(self, name: str) -> tuple[Roi, ...]:
        return self.every + (self.per_frame or {}).get(name, ())


def _box(value: object, where: str) -> Roi:
    if not (isinstance(value, list | tuple) and len(value) == 4 and all(isinstance(v, int) for v in value)):
        raise RoiError(f"{where}: expected a box [x, y, w, h] of integers, got {value!r}")
    return Roi(*value)


def read_roi_file(path: str | Path) -> RoiSpec:
    """Read boxes from JSON (see the module docstring); raises :class:`RoiError`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RoiError(f"{path}: not a readable JSON file of boxes ({e})") from None
    if isinstance(data, list):
        return RoiSpec(every=tuple(_box(b, str(path)) for b in data))
    if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
        return RoiSpec(per_frame={str(k): tuple(_box(b, f"{path} [{k}]") for b in v) for k, v in data.items()})
    raise RoiError(f"{path}: expected a list of boxes or an object mapping frame names to lists of boxes")


@dataclass
class SpatialReading:
    """One box's readout: ``x_mm, y_mm, z_mm`` (camera frame), the box used (after clipping), the number of
    valid depth pixels in it and their fraction of the box."""

    roi: str
    x_mm: float
    y_mm: float
    z_mm: float
    n_valid: int
    coverage: float

    def to_dict(self) -> dict:
        return asdict(self)


def roi_xyz(depth_m: np.ndarray, roi: Roi, intrinsics: Intrinsics) -> SpatialReading:
    """Read out one box on a metric depth map (float ``(H, W)`` metres; NaN or <= 0 = no value)."""
    height, width = depth_m.shape
    x0, y0 = max(roi.x, 0), max(roi.y, 0)
    x1, y1 = min(roi.x + roi.w, width), min(roi.y + roi.h, height)
    if x0 >= x1 or y0 >= y1:
        raise RoiError(f"box {roi} is outside the {width}x{height} image")
    patch = np.asarray(depth_m[y0:y1, x0:x1], np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(patch) & (patch > 0)
    if not valid.any():
        raise RoiError(f"box {roi}: no valid depth inside")
    z = float(np.median(patch[valid]))
    u, v = x0 + (x1 - x0 - 1) / 2.0, y0 + (y1 - y0 - 1) / 2.0
    return SpatialReading(
        roi=f"{x0},{y0},{x1 - x0},{y1 - y0}",
        x_mm=1000.0 * (u - intrinsics.cx) * z / intrinsics.fx,
        y_mm=1000.0 * (v - intrinsics.cy) * z / intrinsics.fy,
        z_mm=1000.0 * z,
        n_valid=int(valid.sum()),
        coverage=float(valid.mean()),
    )
