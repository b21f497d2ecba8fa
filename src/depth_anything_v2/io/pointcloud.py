"""Point clouds from metric depth: camera intrinsics, back-projection, flying-pixel removal, binary PLY.

Conventions:

* Pixel centres sit at integer coordinates (OpenCV's convention): pixel ``(row v, col u)`` is the point
  ``(u, v)``, so the centre of a ``W x H`` image is ``((W - 1) / 2, (H - 1) / 2)``, the default principal point.
* Depth is *planar* (``Z`` along the optical axis, what the metric models predict), not distance along the ray:
  ``X = (u - cx) * Z / fx``, ``Y = (v - cy) * Z / fy``.
* Camera frame: OpenCV's (x right, y down, z forward), metres. ``coordinate_frame="opengl"`` gives
  (x right, y up, z backward) for viewers that expect it.

Intrinsics (:func:`intrinsics_for`), first match wins: explicit ``fx/fy/cx/cy`` > a horizontal field of view
> the focal length in the image's EXIF > the default, a **60 degree horizontal field of view**
(``fx = (W / 2) / tan(30 deg) = 0.866 W``). Why 60: images without EXIF mostly come from webcams, laptop
cameras and video (55-65 degree horizontal), while phone photos, whose main cameras are wider (65-75 degree),
usually carry EXIF. The reference used a fixed 470.4 px whatever the image size, which is only right near
640 px wide.

Flying pixels: bilinear upsampling and the network itself blend foreground and background at depth
discontinuities, producing points strung out in the air between the two surfaces. With ``remove_edges`` a
pixel is dropped when the depth range in its 3x3 neighbourhood is large relative to its own depth:
``(max - min) / Z > edge_rtol`` (default 0.04). A step edge between 2 m and 3 m gives 0.33-0.5 at both of its
sides and is removed; a fronto-parallel or moderately slanted surface gives well under 0.04 and is kept. The
trade-off: a ground plane seen at a grazing angle changes depth by ``1 / (rows below the horizon)`` per row, so
its rows within ~50 px of the horizon (where monocular depth is least reliable anyway) are dropped too.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .atomic import atomic_write

__all__ = [
    "DEFAULT_HFOV_DEG",
    "Intrinsics",
    "depth_edge_mask",
    "depth_to_points",
    "exif_focal_px",
    "intrinsics_for",
    "read_ply",
    "write_ply",
]

log = logging.getLogger(__name__)

#: Horizontal field of view assumed when nothing else is known (see the module docstring for why 60).
DEFAULT_HFOV_DEG = 60.0
#: Default relative depth-range threshold of the flying-pixel filter.
DEFAULT_EDGE_RTOL = 0.04
# Diagonal of a 36 x 24 mm frame: "35 mm equivalent" focal lengths are defined by the diagonal (crop factor).
_FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)

# EXIF tags (Exif IFD 0x8769).
_EXIF_IFD = 0x8769
_TAG_FOCAL_LENGTH = 0x920A
_TAG_FOCAL_35MM = 0xA405
_TAG_FOCAL_PLANE_XRES = 0xA20E
_TAG_FOCAL_PLANE_UNIT = 0xA210
_TAG_PIXEL_X = 0xA002
_TAG_PIXEL_Y = 0xA003
# FocalPlaneResolutionUnit: 2 = inch, 3 = centimetre (EXIF 2.3); 4 = mm and 5 = micrometre appear in the wild.
_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels: focal lengths ``fx``, ``fy`` and principal point ``(cx, cy)``.

    ``source`` says where the focal length came from: ``"explicit"``, ``"fov"``, ``"exif"`` or ``"default"``.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    source: str = "explicit"

    def matrix(self) -> np.ndarray:
        """The 3x3 camera matrix ``K`` (float64)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def hfov_deg(self, width: int) -> float:
        """Horizontal field of view of a ``width``-pixel image with these intrinsics, in degrees."""
        return math.degrees(2.0 * math.atan(width / (2.0 * self.fx)))


def _focal_from_hfov(width: int, fov_deg: float) -> float:
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"expected a horizontal field of view in (0, 180) degrees, got {fov_deg}")
    return (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)


def intrinsics_for(
    width: int,
    height: int,
    *,
    fx: float | None = None,
    fy: float | None = None,
    cx: float | None = None,
    cy: float | None = None,
    fov_deg: float | None = None,
    exif_focal_px: float | None = None,
) -> Intrinsics:
    """Intrinsics for a ``width x height`` image; priority: explicit > ``fov_deg`` > EXIF > 60 degree default.

    ``fx`` alone implies ``fy = fx`` (square pixels) and vice versa. ``cx``/``cy`` default to the image centre
    ``((W - 1) / 2, (H - 1) / 2)`` independently of how the focal length was chosen. ``fov_deg`` is the
    *horizontal* field of view; ``exif_focal_px`` comes from :func:`exif_focal_px`.

    Example::

        >>> k = intrinsics_for(640, 480)
        >>> round(k.fx, 1), k.cx, k.cy, k.source
        (554.3, 319.5, 239.5, 'default')
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"expected a positive image size, got {width}x{height}")
    for name, value in (("fx", fx), ("fy", fy), ("exif_focal_px", exif_focal_px)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"expected {name} > 0, got {value}")
    if fx is not None or fy is not None:
        fx_ = float(fx if fx is not None else fy)  # type: ignore[arg-type]
        fy_ = float(fy if fy is not None else fx)  # type: ignore[arg-type]
        source = "explicit"
    elif fov_deg is not None:
        fx_ = fy_ = _focal_from_hfov(width, fov_deg)
        source = "fov"
    elif exif_focal_px is not None:
        fx_ = fy_ = float(exif_focal_px)
        source = "exif"
    else:
        fx_ = fy_ = _focal_from_hfov(width, DEFAULT_HFOV_DEG)
        source = "default"
    cx_ = float(cx) if cx is not None else (width - 1) / 2.0
    cy_ = float(cy) if cy is not None else (height - 1) / 2.0
    return Intrinsics(fx_, fy_, cx_, cy_, source)


def _rational(value: object) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]  # IFDRational, int, float, or (num, den)
    except (TypeError, ValueError, ZeroDivisionError):
        if isinstance(value, tuple) and len(value) == 2 and value[1]:
            out = value[0] / value[1]
        else:
            return None
    return out if math.isfinite(out) and out > 0 else None


def exif_focal_px(path: str | Path, width: int, height: int) -> float | None:
    """Focal length in pixels of the ``width x height`` image (as decoded, EXIF rotation applied) from EXIF.

    Tries, in order: ``FocalLengthIn35mmFilm`` (``f_px = f35 * diag_px / 43.27 mm``, the 35 mm-equivalent being
    defined on the diagonal), then ``FocalLength`` with ``FocalPlaneXResolution``/``Unit`` (pixels per unit on
    the sensor at the original resolution ``PixelXDimension``, rescaled by the long side to the image's size).
    Returns ``None`` when the file has no usable EXIF (or cannot be opened: this is a best-effort hint).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            exif = im.getexif()
            ifd = dict(exif.get_ifd(_EXIF_IFD))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        log.debug("%s: no EXIF focal length (%s)", path, e)
        return None
    diag_px = math.hypot(width, height)
    f35 = _rational(ifd.get(_TAG_FOCAL_35MM))
    if f35 is not None:
        return f35 * diag_px / _FULL_FRAME_DIAGONAL_MM
    f_mm = _rational(ifd.get(_TAG_FOCAL_LENGTH))
    xres = _rational(ifd.get(_TAG_FOCAL_PLANE_XRES))
    unit_mm = _UNIT_MM.get(int(ifd.get(_TAG_FOCAL_PLANE_UNIT, 2) or 2))
    if f_mm is None or xres is None or unit_mm is None:
        return None
    f_px = f_mm * xres / unit_mm  # at the sensor's original resolution
    px, py = _rational(ifd.get(_TAG_PIXEL_X)), _rational(ifd.get(_TAG_PIXEL_Y))
    if px is not None and py is not None:
        # Long side to long side: independent of an EXIF rotation of the decoded image.
        f_px *= max(width, height) / max(px, py)
    return f_px


def depth_edge_mask(depth_m: np.ndarray, rtol: float = DEFAULT_EDGE_RTOL) -> np.ndarray:
    """Bool ``(H, W)``: true at depth discontinuities, ``(max - min over 3x3) / Z > rtol``.

    Invalid pixels (non-finite or ``<= 0``) do not make their neighbours edges; they are never edges themselves.
    """
    import cv2

    depth = np.asarray(depth_m, np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    kernel = np.ones((3, 3), np.uint8)
    hi = cv2.dilate(np.where(valid, depth, 0.0).astype(np.float32), kernel, borderType=cv2.BORDER_REPLICATE)
    lo = cv2.erode(np.where(valid, depth, np.inf).astype(np.float32), kernel, borderType=cv2.BORDER_REPLICATE)
    with np.errstate(invalid="ignore", divide="ignore"):
        return valid & ((hi - lo) > rtol * depth)


def depth_to_points(
    depth_m: np.ndarray,
    intrinsics: Intrinsics,
    *,
    image_rgb: np.ndarray | None = None,
    remove_edges: bool = True,
    edge_rtol: float = DEFAULT_EDGE_RTOL,
    coordinate_frame: Literal["opencv", "opengl"] = "opencv",
) -> tuple[np.ndarray, np.ndarray]:
    """Back-project a planar metric depth map to 3-D points.

    Args:
        depth_m: float ``(H, W)`` planar depth in metres; non-finite or ``<= 0`` pixels are skipped.
        intrinsics: pixel intrinsics for this ``(H, W)`` (see :func:`intrinsics_for`).
        image_rgb: optional uint8 ``(H, W, 3)`` colours; without it every point is mid-grey (128).
        remove_edges: drop flying pixels at depth discontinuities (:func:`depth_edge_mask`).
        edge_rtol: threshold of the flying-pixel filter.
        coordinate_frame: ``"opencv"`` (x right, y down, z forward) or ``"opengl"`` (x right, y up, z back).

    Returns:
        ``(points float32 (N, 3) metres, colors uint8 (N, 3))`` in row-major pixel order.
    """
    depth = np.asarray(depth_m)
    if depth.ndim != 2:
        raise ValueError(f"expected depth_m of shape (H, W), got {depth.shape}")
    height, width = depth.shape
    if image_rgb is not None:
        image_rgb = np.asarray(image_rgb)
        if image_rgb.shape != (height, width, 3) or image_rgb.dtype != np.uint8:
            raise ValueError(
                f"expected image_rgb uint8 of shape {(height, width, 3)}, got {image_rgb.dtype} {image_rgb.shape}"
            )
    if coordinate_frame not in ("opencv", "opengl"):
        raise ValueError(f"expected coordinate_frame 'opencv' or 'opengl', got {coordinate_frame!r}")
    depth = depth.astype(np.float32, copy=False)
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(depth) & (depth > 0)
    if remove_edges:
        edges = depth_edge_mask(depth, edge_rtol)
        log.debug("flying-pixel filter: %d of %d valid pixels dropped", int(edges.sum()), int(keep.sum()))
        keep &= ~edges
    # Float32 maps over the whole grid, then one boolean selection: no int64 index arrays (12 MP photos).
    inv_fx = np.float32(1.0 / intrinsics.fx)
    inv_fy = np.float32(1.0 / intrinsics.fy)
    ray_x = (np.arange(width, dtype=np.float32) - np.float32(intrinsics.cx)) * inv_fx
    ray_y = (np.arange(height, dtype=np.float32) - np.float32(intrinsics.cy)) * inv_fy
    z = depth[keep]
    points = np.empty((z.size, 3), np.float32)
    points[:, 0] = (depth * ray_x[None, :])[keep]
    points[:, 1] = (depth * ray_y[:, None])[keep]
    points[:, 2] = z
    if coordinate_frame == "opengl":
        points[:, 1:] *= -1
    colors = image_rgb[keep] if image_rgb is not None else np.full((z.size, 3), 128, np.uint8)
    return points, colors


def _ply_dtype(with_colors: bool) -> np.dtype:
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if with_colors:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    return np.dtype(fields)


def write_ply(path: str | Path, points: np.ndarray, colors: np.ndarray | None = None) -> Path:
    """Write a binary little-endian PLY (``float x, y, z`` and, with colours, ``uchar red, green, blue``).

    The file is written to a temporary file next to ``path`` and moved into place (``os.replace``), so a
    killed run never leaves a half-written PLY. Returns ``path``.
    """
    path = Path(path)
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"expected points of shape (N, 3), got {points.shape}")
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != points.shape:
            raise ValueError(f"expected colors of shape {points.shape} (same as points), got {colors.shape}")
        if colors.dtype != np.uint8:
            raise ValueError(f"expected colors of dtype uint8, got {colors.dtype}")
    vertex = np.empty(points.shape[0], _ply_dtype(colors is not None))
    vertex["x"], vertex["y"], vertex["z"] = points[:, 0], points[:, 1], points[:, 2]
    header = [
        "ply",
        "format binary_little_endian 1.0",
        "comment written by depth_anything_v2 (metres, OpenCV camera frame unless stated)",
        f"element vertex {points.shape[0]}",
        "property float x",
        "property float y",
        "property float z",
    ]
    if colors is not None:
        vertex["red"], vertex["green"], vertex["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header.append("end_header")
    with atomic_write(path) as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        vertex.tofile(f)
    return path


def read_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a PLY written by :func:`write_ply` (binary little-endian, vertex ``x y z [red green blue]``).

    Returns ``(points float32 (N, 3), colors uint8 (N, 3) or None)``. Not a general PLY reader.
    """
    data = Path(path).read_bytes()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise ValueError(f"{path}: expected a PLY file, got no 'ply' ... 'end_header' header")
    header = data[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in header:
        raise ValueError(f"{path}: expected binary_little_endian 1.0 PLY")
    count = next(int(line.split()[2]) for line in header if line.startswith("element vertex"))
    with_colors = "property uchar red" in header
    vertex = np.frombuffer(data, _ply_dtype(with_colors), count=count, offset=end + len(b"end_header\n"))
    points = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1).astype(np.float32)
    colors = np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1) if with_colors else None
    return points, colors
