"""Tests for ``depth_anything_v2.io.outputs``: colormaps, normalisation and the atomic writers."""

from __future__ import annotations

import numpy as np
import pytest

from depth_anything_v2.io import outputs
from depth_anything_v2.io.outputs import colorize, display_range, get_colormap, normalize_to_index, to_gray8


def test_embedded_luts_golden_entries():
    # Entries read from matplotlib 3.11: (cmap(np.arange(256))[:, :3] * 255).astype(uint8).
    assert get_colormap("Spectral_r")[[0, 77, 128, 255]].tolist() == [
        [94, 79, 162],
        [172, 221, 163],
        [254, 254, 189],
        [158, 1, 66],
    ]
    assert get_colormap("viridis_r")[[0, 77, 128, 255]].tolist() == [
        [253, 231, 36],
        [66, 190, 113],
        [32, 143, 140],
        [68, 1, 84],
    ]
    turbo = get_colormap("turbo")[[0, 77, 128, 255]].tolist()
    assert turbo == [[48, 18, 59], [24, 215, 202], [164, 252, 59], [122, 4, 2]]
    gray = get_colormap("gray")[:, 0].astype(int)
    assert (np.abs(gray - np.arange(256)) <= 1).all()  # matplotlib's float LUT truncates some entries by one
    for name in outputs.available_colormaps():
        lut = get_colormap(name)
        assert lut.shape == (256, 3) and lut.dtype == np.uint8


def test_embedded_luts_match_matplotlib_when_installed():
    matplotlib = pytest.importorskip("matplotlib")
    for name in outputs.available_colormaps():
        expected = (matplotlib.colormaps[name](np.arange(256))[:, :3] * 255).astype(np.uint8)
        np.testing.assert_array_equal(get_colormap(name), expected, err_msg=name)


def test_colorize_matches_reference_formula():
    rng = np.random.default_rng(0)
    d = rng.random((4, 5)).astype(np.float32) * 3
    rgb = colorize(d)
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    # Golden output of the reference run.py path (matplotlib Spectral_r on the 8-bit index), RGB order.
    assert rgb.reshape(-1, 3)[:6].tolist() == [
        [253, 184, 106],
        [161, 217, 164],
        [76, 101, 172],
        [88, 85, 165],
        [223, 77, 75],
        [173, 17, 69],
    ]
    idx = ((d - d.min()) / (d.max() - d.min()) * 255.0).astype(np.uint8)
    np.testing.assert_array_equal(rgb, get_colormap("Spectral_r")[idx])
    # Extremes: min -> first colour (far, blue), max -> last colour (near, red).
    assert rgb.reshape(-1, 3)[d.argmin()].tolist() == [94, 79, 162]
    assert rgb.reshape(-1, 3)[d.argmax()].tolist() == [158, 1, 66]


def test_colorize_fixed_range_clips_and_constant_map_has_no_division_by_zero():
    d = np.array([[-1.0, 0.0, 0.5, 1.0, 2.0]], np.float32)
    idx, _ = normalize_to_index(d, 0.0, 1.0)
    assert idx.tolist() == [[0, 0, 127, 255, 255]]
    with np.errstate(all="raise"):
        const = colorize(np.full((3, 4), 7.0, np.float32))
        assert (const == get_colormap("Spectral_r")[0]).all()
        assert to_gray8(np.zeros((2, 2), np.float32)).tolist() == [[0, 0], [0, 0]]


def test_colorize_nonfinite_black_and_ignored_by_range():
    d = np.array([[0.0, 1.0, np.nan, np.inf]], np.float32)
    rgb = colorize(d, "gray")
    assert rgb[0, :, 0].tolist() == [0, 255, 0, 0]
    assert display_range(d) == (0.0, 1.0)


def test_metric_range_is_reversed_so_near_looks_near():
    depth_m = np.array([[1.0, 2.0, 10.0]], np.float32)  # 1 m is near
    disparity = 1.0 / depth_m
    near_metric = colorize(depth_m, vmin=None, vmax=None)  # plain: small value -> blue
    assert near_metric[0, 0].tolist() == [94, 79, 162]
    rgb_metric = colorize(depth_m, "Spectral_r", *display_range(depth_m, "metric"))
    rgb_disp = colorize(disparity, "Spectral_r", *display_range(disparity, "disparity"))
    assert rgb_metric[0, 0].tolist() == rgb_disp[0, 0].tolist() == [158, 1, 66]  # near = red in both
    assert rgb_metric[0, 2].tolist() == rgb_disp[0, 2].tolist() == [94, 79, 162]  # far = blue in both
    assert to_gray8(depth_m, *display_range(depth_m, "metric"))[0].tolist() == [255, 226, 0]  # trunc(8/9*255)


def test_unknown_colormap_and_bad_shape():
    with pytest.raises(ValueError, match="unknown colormap 'nope'"):
        get_colormap("nope")
    with pytest.raises(ValueError, match=r"expected a 2-D map \(H, W\), got shape \(2, 2, 2\)"):
        colorize(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="expected kind 'disparity' or 'metric', got 'x'"):
        display_range(np.zeros((2, 2)), "x")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------------------
# Writers


def _smooth_map(height: int = 30, width: int = 40, lo: float = 0.25, hi: float = 9.5) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    t = (np.sin(x / 7.0) * np.cos(y / 5.0) + 1) / 2
    d = (lo + t * (hi - lo)).astype(np.float32)
    d[0, 0], d[-1, -1] = lo, hi
    return d


def test_npy_exact(tmp_path):
    d = _smooth_map()
    d[3, 4] = 1e-30
    outputs.write_npy(tmp_path / "a.npy", d)
    back = np.load(tmp_path / "a.npy")
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, d)


def test_png16_disparity_roundtrip_within_quantisation(tmp_path):
    from PIL import Image

    d = _smooth_map()
    mapping = outputs.write_depth_png16(tmp_path / "d.png", d, "disparity")
    assert mapping == {"kind": "disparity", "encoding": "linear", "min": 0.25, "max": 9.5, "scale": 65535}
    with Image.open(tmp_path / "d.png") as im:
        im.verify()  # chunk CRCs, including the inserted tEXt chunk
    with Image.open(tmp_path / "d.png") as im:
        assert im.mode.startswith("I;16") and im.size == (40, 30)
        raw = np.asarray(im)
        assert raw.min() == 0 and raw.max() == 65535  # the full 16-bit range is used
    back = outputs.read_depth_png16(tmp_path / "d.png")
    step = (9.5 - 0.25) / 65535
    err = np.abs(back.astype(np.float64) - d)
    assert err.max() <= step / 2 + 1e-6  # half a quantisation step (plus float32 rounding)
    assert back[0, 0] == np.float32(0.25) and back[-1, -1] == np.float32(9.5)
    # OpenCV reads the same raw values (standard 16-bit PNG), and the documented formula inverts them.
    import cv2

    raw_cv = cv2.imread(str(tmp_path / "d.png"), cv2.IMREAD_UNCHANGED)
    assert raw_cv.dtype == np.uint16
    np.testing.assert_allclose(0.25 + raw_cv / 65535 * (9.5 - 0.25), d, atol=step / 2 + 1e-6)


def test_png16_metric_millimetres(tmp_path):
    import cv2

    d = np.array([[0.0, 0.0004, 0.0006, 1.2344], [2.5, 65.535, 80.0, np.nan]], np.float32)
    mapping = outputs.write_depth_png16(tmp_path / "m.png", d, "metric")
    assert mapping["unit_m"] == 0.001 and mapping["invalid"] == 0
    raw = cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_UNCHANGED)
    assert raw.tolist() == [[0, 1, 1, 1234], [2500, 65535, 65535, 0]]  # mm; 0 = no value; saturates
    back = outputs.read_depth_png16(tmp_path / "m.png")
    np.testing.assert_allclose(back, [[0, 0.001, 0.001, 1.234], [2.5, 65.535, 65.535, 0]], atol=1e-6)
    # Another fixed unit (centimetres) is recorded and inverted the same way.
    outputs.write_depth_png16(tmp_path / "cm.png", d, "metric", metric_unit_m=0.01)
    assert outputs.read_depth_png16(tmp_path / "cm.png")[1, 2] == pytest.approx(80.0)


def test_png16_constant_map_and_foreign_png(tmp_path):
    const = np.full((5, 6), 3.25, np.float32)
    with np.errstate(all="raise"):
        outputs.write_depth_png16(tmp_path / "c.png", const)
    np.testing.assert_array_equal(outputs.read_depth_png16(tmp_path / "c.png"), const)
    outputs.write_rgb_png(tmp_path / "plain.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="expected a 16-bit depth PNG with a 'depth_anything_v2' text chunk"):
        outputs.read_depth_png16(tmp_path / "plain.png")


def test_pfm_roundtrip(tmp_path):
    d = _smooth_map(7, 9)
    outputs.write_pfm(tmp_path / "a.pfm", d)
    raw = (tmp_path / "a.pfm").read_bytes()
    assert raw.startswith(b"Pf\n9 7\n-1.0\n") and len(raw) == len(b"Pf\n9 7\n-1.0\n") + 7 * 9 * 4
    np.testing.assert_array_equal(outputs.read_pfm(tmp_path / "a.pfm"), d)
    # Bottom-to-top row order, per the format: the first stored row is the image's last.
    first_row = np.frombuffer(raw[len(b"Pf\n9 7\n-1.0\n") :][: 9 * 4], "<f4")
    np.testing.assert_array_equal(first_row, d[-1])
    (tmp_path / "t.pfm").write_bytes(raw[:-8])
    with pytest.raises(ValueError, match="expected 63 floats, got 61"):
        outputs.read_pfm(tmp_path / "t.pfm")


def test_write_depth_outputs_all_formats(tmp_path):
    from depth_anything_v2.io.images import read_image

    d = _smooth_map()
    image_rgb = np.full((30, 40, 3), 90, np.uint8)
    paths = {fmt: tmp_path / f"x{suffix}" for fmt, suffix in outputs.FORMATS.items() if fmt != "ply"}
    written = outputs.write_depth_outputs(paths, d, "disparity", image_rgb=image_rgb, colormap="viridis")
    assert sorted(p.name for p in written) == sorted(p.name for p in paths.values())
    color = read_image(paths["color"])
    np.testing.assert_array_equal(color, colorize(d, "viridis"))
    gray = read_image(paths["gray"])[:, :, 0]
    assert gray[0, 0] == 0 and gray[-1, -1] == 255  # min dark, max (near) white
    sbs = read_image(paths["sbs"])
    assert sbs.shape == (30, 40 + outputs.SBS_GAP_PX + 40, 3)
    np.testing.assert_array_equal(sbs[:, :40], image_rgb)
    assert (sbs[:, 40 : 40 + outputs.SBS_GAP_PX] == 255).all()
    np.testing.assert_array_equal(sbs[:, -40:], color)
    np.testing.assert_array_equal(np.load(paths["npy"]), d)
    np.testing.assert_array_equal(outputs.read_pfm(paths["pfm"]), d)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())  # no temp files
    with pytest.raises(ValueError, match=r"expected formats from .*, got \['jpg'\]"):
        outputs.write_depth_outputs({"jpg": tmp_path / "a.jpg"}, d)


def test_metric_color_output_near_is_red(tmp_path):
    from depth_anything_v2.io.images import read_image

    depth_m = np.array([[1.0, 5.0], [10.0, 20.0]], np.float32)
    outputs.write_depth_outputs({"color": tmp_path / "c.png"}, depth_m, "metric")
    rgb = read_image(tmp_path / "c.png")
    assert rgb[0, 0].tolist() == [158, 1, 66] and rgb[1, 1].tolist() == [94, 79, 162]


def test_ply_output_from_metric_depth(tmp_path):
    from depth_anything_v2.io import pointcloud

    depth_m = np.full((6, 8), 2.0, np.float32)
    image_rgb = np.zeros((6, 8, 3), np.uint8)
    image_rgb[..., 1] = 200
    k = pointcloud.intrinsics_for(8, 6, fx=4.0)
    outputs.write_depth_outputs({"ply": tmp_path / "p.ply"}, depth_m, "metric", image_rgb=image_rgb, intrinsics=k)
    points, colors = pointcloud.read_ply(tmp_path / "p.ply")
    assert points.shape == (48, 3) and np.allclose(points[:, 2], 2.0)
    # Pixel (row 0, col 0): X = (0 - 3.5) * 2 / 4, Y = (0 - 2.5) * 2 / 4.
    np.testing.assert_allclose(points[0], [-1.75, -1.25, 2.0], rtol=1e-6)
    assert (colors == [0, 200, 0]).all()
    with pytest.raises(ValueError, match="the 'ply' format needs metric depth and intrinsics, got kind 'disparity'"):
        outputs.write_depth_outputs({"ply": tmp_path / "q.ply"}, depth_m, "disparity", intrinsics=k)
    assert not (tmp_path / "q.ply").exists()
