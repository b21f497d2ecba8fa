"""Metric alignment: robust scale/shift recovery with outliers, few points, sky, and known-depth readers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from depth_anything_v2.align.metric import (
    KNOWN_DEPTH_SUFFIXES,
    AlignmentError,
    KnownDepthError,
    align_to_metric,
    read_known_depth,
    robust_scale_shift,
)

SCALE, SHIFT = 0.21, 0.035


def _scene(h: int = 120, w: int = 160, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(disparity, true depth in metres) with 1/Z = SCALE * disparity + SHIFT."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    disparity = 0.3 + 4.0 * yy / h + 0.8 * np.sin(xx / 13.0) ** 2 + rng.uniform(0, 0.2, (h, w))
    return disparity.astype(np.float32), (1.0 / (SCALE * disparity + SHIFT)).astype(np.float32)


@pytest.mark.parametrize("outlier_fraction", [0.2, 0.3])
def test_recovers_known_scale_and_shift_with_outliers(outlier_fraction):
    disparity, depth = _scene()
    rng = np.random.default_rng(1)
    mask = rng.random(disparity.shape) < 0.05  # ~960 sparse known points, like a projected LiDAR scan
    known = depth * (1 + 0.01 * rng.standard_normal(depth.shape))  # 1 % measurement noise
    outlier = mask & (rng.random(depth.shape) < outlier_fraction)
    known[outlier] = rng.uniform(0.5, 30.0, outlier.sum())  # gross errors: reflections, occlusions
    known = np.where(mask, known, 0).astype(np.float32)

    result = align_to_metric(disparity, known, mask)
    assert result.robust and result.n_points == mask.sum()
    assert result.scale == pytest.approx(SCALE, rel=0.01) and result.shift == pytest.approx(SHIFT, abs=0.004)
    assert result.inlier_ratio == pytest.approx(1 - outlier_fraction, abs=0.05)
    assert result.abs_rel < 0.015 and result.abs_rel_all > 0.1  # the outliers are reported, not fitted
    np.testing.assert_allclose(result.depth_m, depth, rtol=0.02)
    # Plain least squares on the same points is badly off: the robustness is what makes this work.
    d, z = disparity[mask], known[mask]
    ls_scale = np.polyfit(d, 1 / z, 1)[0]
    assert abs(ls_scale / SCALE - 1) > 0.1
    assert set(result.to_dict()) >= {"scale", "shift", "n_points", "inlier_ratio", "rmse_m", "abs_rel"}
    assert "inliers" in result.summary()


def test_few_points_are_fitted_but_flagged_not_robust():
    disparity, depth = _scene()
    pts = [(10, 10), (100, 150), (60, 40)]
    mask = np.zeros(disparity.shape, bool)
    for r, c in pts[:2]:
        mask[r, c] = True
    result = align_to_metric(disparity, np.where(mask, depth, 0), mask)
    assert not result.robust and "no outlier rejection" in result.note
    assert result.scale == pytest.approx(SCALE, rel=1e-4) and result.shift == pytest.approx(SHIFT, abs=1e-5)
    assert result.rmse_m == pytest.approx(0.0, abs=1e-4)
    mask[pts[2]] = True
    result = align_to_metric(disparity, np.where(mask, depth, 0), mask)
    assert not result.robust and result.n_points == 3 and "3 known points" in result.note
    assert result.scale == pytest.approx(SCALE, rel=1e-4)


def test_sky_and_cap_become_nan():
    disparity = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
    known = 1.0 / (0.5 * disparity - 0.2)  # shift < 0: disparity 0 lies beyond infinity
    mask = disparity > 0
    result = align_to_metric(disparity, np.where(mask, known, 0), mask)
    assert np.isnan(result.depth_m[0, 0]) and np.isfinite(result.depth_m[mask]).all()
    np.testing.assert_allclose(result.depth_m[mask], known[mask], rtol=1e-5)
    capped = align_to_metric(disparity, np.where(mask, known, 0), mask, max_depth_m=1.0)
    assert np.isnan(capped.depth_m[0, 1]) and np.isfinite(capped.depth_m[1, 1])  # 3.33 m > cap, 0.77 m kept


def test_alignment_errors():
    disparity, depth = _scene(20, 20)
    one = np.zeros(disparity.shape, bool)
    one[3, 3] = True
    with pytest.raises(AlignmentError, match="at least 2 known depths"):
        align_to_metric(disparity, depth, one)
    with pytest.raises(AlignmentError, match="at least 2 known depths"):
        align_to_metric(disparity, np.zeros_like(depth), None)
    with pytest.raises(ValueError, match=r"expected known_depth_m of shape \(20, 20\)"):
        align_to_metric(disparity, depth[:10], None)
    with pytest.raises(AlignmentError, match="depth map rather than a disparity"):
        align_to_metric(depth, depth, None)  # a depth map passed as disparity: anti-correlated
    with pytest.raises(AlignmentError, match="different predicted disparities"):
        align_to_metric(np.ones((20, 20), np.float32), depth, None)


def test_robust_scale_shift_on_lines():
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 10, 5000)
    y = 2.5 * x - 1.0 + rng.normal(0, 0.01, x.size)
    bad = rng.random(x.size) < 0.3
    y[bad] = rng.uniform(-20, 30, bad.sum())
    s, t, inliers = robust_scale_shift(x, y, 0.05)
    assert s == pytest.approx(2.5, abs=1e-3) and t == pytest.approx(-1.0, abs=5e-3)
    assert (inliers == ~bad).mean() > 0.98


def test_read_png16_millimetres_and_units(tmp_path):
    depth_mm = np.zeros((48, 64), np.uint16)
    depth_mm[::4, ::4] = 1500
    depth_mm[1, 1] = 65535
    cv2.imwrite(str(tmp_path / "d.png"), depth_mm)
    depth_m, mask = read_known_depth(tmp_path / "d.png", (48, 64))
    assert depth_m.dtype == np.float32 and mask.sum() == 16 * 12 + 1
    assert depth_m[0, 0] == pytest.approx(1.5) and depth_m[1, 1] == pytest.approx(65.535) and depth_m[0, 1] == 0
    depth_m, _ = read_known_depth(tmp_path / "d.png", (48, 64), png_unit_m=1 / 256)  # KITTI's unit
    assert depth_m[0, 0] == pytest.approx(1500 / 256)


def test_read_npy_with_invalid_values(tmp_path):
    arr = np.full((48, 64), np.nan, np.float32)
    arr[10, 20], arr[11, 21], arr[12, 22], arr[13, 23] = 2.5, 0.0, -1.0, np.inf
    np.save(tmp_path / "d.npy", arr)
    depth_m, mask = read_known_depth(tmp_path / "d.npy", (48, 64))
    assert mask.sum() == 1 and mask[10, 20] and depth_m[10, 20] == 2.5


def test_read_csv_points(tmp_path):
    path = tmp_path / "pts.csv"
    path.write_text("row,col,depth_m\n# tape measure\n10, 20, 1.5\n\n30.4 40.6 3.25\n30,41,3.75\n5;5;0\n")
    depth_m, mask = read_known_depth(path, (48, 64))
    assert mask.sum() == 2 and depth_m[10, 20] == 1.5 and depth_m[30, 41] == pytest.approx(3.5)  # 2 points averaged
    (tmp_path / "bad.txt").write_text("10 20 1.5\n10 twenty 1.5\n")
    with pytest.raises(KnownDepthError, match=r"bad.txt:2: expected 'row,col,depth_m'"):
        read_known_depth(tmp_path / "bad.txt", (48, 64))
    (tmp_path / "out.csv").write_text("48,0,1.0\n")
    with pytest.raises(KnownDepthError, match=r"out.csv:1: pixel \(row 48, col 0\) is outside the 48x64 image"):
        read_known_depth(tmp_path / "out.csv", (48, 64))
    (tmp_path / "two.csv").write_text("1,2\n")
    with pytest.raises(KnownDepthError, match="expected 3 fields"):
        read_known_depth(tmp_path / "two.csv", (48, 64))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", "no valid known depth"),
        ("header_only.csv", "row,col,depth_m\n", "no valid known depth"),
        ("zeros.npy", None, "no valid known depth"),
        ("zeros.png", None, "no valid known depth"),
        ("broken.png", b"\x89PNG garbage", "not a readable depth image"),
        ("broken.npy", b"nope", "not a readable .npy"),
        ("depth.exr", b"x", "expected a .png/.tif depth image"),
        ("missing.png", False, "no such file"),
    ],
)
def test_known_depth_errors(tmp_path, name, content, message):
    assert {".png", ".npy", ".csv", ".txt", ".tif"} <= KNOWN_DEPTH_SUFFIXES
    path = tmp_path / name
    if name == "zeros.npy":
        np.save(path, np.zeros((48, 64), np.float32))
    elif name == "zeros.png":
        cv2.imwrite(str(path), np.zeros((48, 64), np.uint16))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    with pytest.raises(KnownDepthError, match=message):
        read_known_depth(path, (48, 64))


def test_resizing_keeps_sparse_points_and_checks_aspect(tmp_path):
    big = np.zeros((96, 128), np.float32)
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 96, 50), rng.integers(0, 128, 50)
    big[rows, cols] = rng.uniform(1, 10, 50)
    np.save(tmp_path / "big.npy", big)
    depth_m, mask = read_known_depth(tmp_path / "big.npy", (48, 64))  # downscale: every point is placed
    n_unique = len({(r // 2, c // 2) for r, c in zip(rows, cols, strict=True)})
    assert mask.sum() == n_unique
    assert depth_m.sum() == pytest.approx(
        sum(np.mean([big[r, c] for r, c in zip(rows, cols, strict=True) if (r // 2, c // 2) == cell]) for cell in
            {(r // 2, c // 2) for r, c in zip(rows, cols, strict=True)}), rel=1e-5)  # fmt: skip
    small = np.zeros((24, 32), np.float32)
    small[5, 7] = 4.0
    np.save(tmp_path / "small.npy", small)
    depth_m, mask = read_known_depth(tmp_path / "small.npy", (48, 64))  # upscale: nearest neighbour
    assert mask.sum() == 4 and mask[10:12, 14:16].all() and (depth_m[mask] == 4.0).all()
    np.save(tmp_path / "wide.npy", np.ones((48, 100), np.float32))
    with pytest.raises(KnownDepthError, match="aspect ratio"):
        read_known_depth(tmp_path / "wide.npy", (48, 64))


def test_read_then_align_end_to_end(tmp_path):
    disparity, depth = _scene(48, 64)
    lines = [f"{r},{c},{depth[r, c]:.6f}" for r, c in [(2, 3), (40, 60), (20, 30), (10, 50), (30, 10), (44, 4)]]
    lines.append("25,25,50.0")  # one bad measurement
    (tmp_path / "pts.txt").write_text("\n".join(lines))
    known, mask = read_known_depth(tmp_path / "pts.txt", disparity.shape)
    result = align_to_metric(disparity, known, mask)
    assert result.robust and result.n_points == 7 and result.n_inliers == 6
    assert result.scale == pytest.approx(SCALE, rel=1e-4) and result.rmse_m < 1e-4
