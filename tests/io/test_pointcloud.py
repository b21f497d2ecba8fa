"""Point clouds: intrinsics priority and EXIF, back-projection geometry, flying pixels, binary PLY round-trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from depth_anything_v2.io import pointcloud as pc


def test_intrinsics_priority_and_defaults():
    k = pc.intrinsics_for(640, 480)
    assert k.source == "default" and k.fx == pytest.approx(320 / math.tan(math.radians(30)))
    assert (k.cx, k.cy) == (319.5, 239.5) and k.hfov_deg(640) == pytest.approx(60.0)
    k = pc.intrinsics_for(640, 480, exif_focal_px=500.0)
    assert (k.fx, k.fy, k.source) == (500.0, 500.0, "exif")
    k = pc.intrinsics_for(640, 480, fov_deg=90.0, exif_focal_px=500.0)
    assert k.source == "fov" and k.fx == pytest.approx(320.0)
    k = pc.intrinsics_for(640, 480, fx=700.0, fov_deg=90.0, exif_focal_px=500.0, cy=200.0)
    assert (k.fx, k.fy, k.cx, k.cy, k.source) == (700.0, 700.0, 319.5, 200.0, "explicit")
    k = pc.intrinsics_for(640, 480, fy=650.0)
    assert (k.fx, k.fy) == (650.0, 650.0)
    np.testing.assert_array_equal(k.matrix(), [[650, 0, 319.5], [0, 650, 239.5], [0, 0, 1]])
    with pytest.raises(ValueError, match=r"field of view in \(0, 180\)"):
        pc.intrinsics_for(640, 480, fov_deg=180)
    with pytest.raises(ValueError, match="expected fx > 0"):
        pc.intrinsics_for(640, 480, fx=-1.0)


def test_exif_focal_length(tmp_path):
    image = Image.fromarray(np.zeros((48, 64, 3), np.uint8))
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 26  # FocalLengthIn35mmFilm
    image.save(tmp_path / "f35.jpg", exif=exif)
    # 35 mm equivalent is defined on the diagonal: 26 mm of 43.27 mm -> 26 / 43.27 of the 80 px diagonal.
    assert pc.exif_focal_px(tmp_path / "f35.jpg", 64, 48) == pytest.approx(26 * 80 / math.hypot(36, 24))

    exif = Image.Exif()
    ifd = exif.get_ifd(0x8769)
    ifd[0x920A] = IFDRational(17, 4)  # FocalLength 4.25 mm
    ifd[0xA20E] = IFDRational(4000 / 5.6)  # FocalPlaneXResolution: 4000 px over a 5.6 mm wide sensor
    ifd[0xA210] = 4  # ... in millimetres
    ifd[0xA002], ifd[0xA003] = 4000, 3000  # original resolution; the file is a 64x48 downscale
    image.save(tmp_path / "plane.jpg", exif=exif)
    assert pc.exif_focal_px(tmp_path / "plane.jpg", 64, 48) == pytest.approx(4.25 * 4000 / 5.6 * 64 / 4000)
    # Rotated by EXIF orientation (48x64 as decoded): long side to long side, same focal length.
    assert pc.exif_focal_px(tmp_path / "plane.jpg", 48, 64) == pytest.approx(4.25 * 4000 / 5.6 * 64 / 4000)

    image.save(tmp_path / "none.png")
    assert pc.exif_focal_px(tmp_path / "none.png", 64, 48) is None
    (tmp_path / "junk.jpg").write_bytes(b"nope")
    assert pc.exif_focal_px(tmp_path / "junk.jpg", 64, 48) is None
    assert pc.exif_focal_px(tmp_path / "missing.jpg", 64, 48) is None


def _plane_depth(k: pc.Intrinsics, h: int, w: int, normal, offset) -> np.ndarray:
    """Planar depth Z of the plane normal . P = offset, seen through intrinsics k."""
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones_like(u)], axis=-1)
    return offset / (rays @ np.asarray(normal, np.float64))


def test_points_lie_on_a_synthetic_plane_and_pixels_back_project():
    h, w = 60, 80
    k = pc.intrinsics_for(w, h, fx=70.0, fy=75.0, cx=41.0, cy=28.5)
    normal, offset = np.array([0.2, -0.3, 1.0]), 3.0
    depth = _plane_depth(k, h, w, normal, offset).astype(np.float32)
    rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    points, colors = pc.depth_to_points(depth, k, image_rgb=rgb, remove_edges=True)
    assert points.shape == (h * w, 3) and points.dtype == np.float32  # a slanted plane has no flying pixels
    np.testing.assert_allclose(points @ normal, offset, rtol=2e-6)
    np.testing.assert_array_equal(colors, rgb.reshape(-1, 3))
    # Pixel (row 5, col 10): X = (10 - cx) Z / fx, Y = (5 - cy) Z / fy, row-major index 5 * w + 10.
    z = float(depth[5, 10])
    np.testing.assert_allclose(points[5 * w + 10], [(10 - 41.0) * z / 70.0, (5 - 28.5) * z / 75.0, z], rtol=1e-6)
    # The principal point back-projects onto the optical axis.
    k2 = pc.intrinsics_for(w, h, fx=70.0, cx=40.0, cy=30.0)
    p2, _ = pc.depth_to_points(np.full((h, w), 2.0, np.float32), k2)
    np.testing.assert_allclose(p2[30 * w + 40], [0.0, 0.0, 2.0])
    gl, _ = pc.depth_to_points(np.full((h, w), 2.0, np.float32), k2, coordinate_frame="opengl")
    np.testing.assert_allclose(gl, p2 * np.array([1, -1, -1], np.float32))


def test_flying_pixels_at_a_step_edge_are_removed():
    h, w = 40, 60
    depth = np.full((h, w), 2.0, np.float32)
    depth[:, 30:] = 3.0
    depth[:, 29] = 2.33  # what bilinear upsampling leaves between the two surfaces
    depth[:, 30] = 2.67
    depth[0, 0] = np.nan  # invalid pixels are skipped, and do not make their neighbours edges
    depth[0, 5] = 0.0
    k = pc.intrinsics_for(w, h)
    kept, _ = pc.depth_to_points(depth, k, remove_edges=True)
    allpts, _ = pc.depth_to_points(depth, k, remove_edges=False)
    z_kept, z_all = kept[:, 2], allpts[:, 2]
    assert ((z_all > 2.05) & (z_all < 2.95)).sum() == 2 * h  # the in-between points exist without the filter
    assert ((z_kept > 2.05) & (z_kept < 2.95)).sum() == 0  # ... and are gone with it
    assert len(z_all) == h * w - 2
    # Only the band around the step goes: columns 28..31 (the 3x3 window reaches one column further).
    assert len(z_kept) == h * (w - 4) - 2
    edges = pc.depth_edge_mask(depth)
    assert edges[:, 28:32].all() and not edges[:, :28].any() and not edges[:, 32:].any()


def test_ply_round_trip_and_atomic_write(tmp_path):
    rng = np.random.default_rng(1)
    points = rng.normal(size=(1000, 3)).astype(np.float32)
    colors = rng.integers(0, 256, (1000, 3), dtype=np.uint8)
    path = pc.write_ply(tmp_path / "sub" / "cloud.ply", points, colors)
    assert [p.name for p in path.parent.iterdir()] == ["cloud.ply"]  # no temporary file left
    # Read back with plain numpy: header lines, then packed little-endian float32 x3 + uint8 x3 records.
    data = path.read_bytes()
    head, body = data.split(b"end_header\n", 1)
    lines = head.decode("ascii").splitlines()
    assert lines[:2] == ["ply", "format binary_little_endian 1.0"] and "element vertex 1000" in lines
    assert len(body) == 1000 * 15
    rec = np.frombuffer(body, np.dtype([("p", "<f4", 3), ("c", "u1", 3)]))
    np.testing.assert_array_equal(rec["p"], points)
    np.testing.assert_array_equal(rec["c"], colors)
    p2, c2 = pc.read_ply(path)
    np.testing.assert_array_equal(p2, points)
    np.testing.assert_array_equal(c2, colors)
    pc.write_ply(tmp_path / "plain.ply", points)
    p3, c3 = pc.read_ply(tmp_path / "plain.ply")
    assert c3 is None and np.array_equal(p3, points)
    with pytest.raises(ValueError, match="expected colors of shape"):
        pc.write_ply(tmp_path / "bad.ply", points, colors[:10])
    with pytest.raises(ValueError, match=r"expected points of shape \(N, 3\)"):
        pc.write_ply(tmp_path / "bad.ply", points[:, :2])
    assert not (tmp_path / "bad.ply").exists()


def test_depth_to_points_input_errors():
    k = pc.intrinsics_for(8, 6)
    with pytest.raises(ValueError, match=r"expected depth_m of shape \(H, W\)"):
        pc.depth_to_points(np.ones((1, 6, 8), np.float32), k)
    with pytest.raises(ValueError, match="expected image_rgb uint8 of shape"):
        pc.depth_to_points(np.ones((6, 8), np.float32), k, image_rgb=np.zeros((6, 8, 3), np.float32))
