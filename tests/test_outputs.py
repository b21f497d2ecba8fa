"""Tests for ``depth_anything_v2.outputs``: colormaps, normalisation and the atomic writers."""

from __future__ import annotations

import numpy as np
import pytest

from depth_anything_v2 import outputs
from depth_anything_v2.outputs import colorize, display_range, get_colormap, normalize_to_index, to_gray8


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
