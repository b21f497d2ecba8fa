"""The one set of depth-file readers/writers shared by outputs, dataset and benchmark readers."""

from __future__ import annotations

import numpy as np
import pytest

from depth_anything_v2.data import datasets
from depth_anything_v2.evaluation import datasets as eval_datasets
from depth_anything_v2.io import depth_files, outputs
from depth_anything_v2.io.depth_files import DepthFileError, hypersim_distance_to_depth, read_pfm, write_pfm


def test_every_package_uses_the_one_implementation():
    assert outputs.read_pfm is datasets.read_pfm is read_pfm and outputs.write_pfm is datasets.write_pfm is write_pfm
    assert datasets.hypersim_distance_to_depth is eval_datasets.hypersim_distance_to_depth is hypersim_distance_to_depth


@pytest.mark.parametrize("shape", [(5, 7), (4, 6, 3)])
def test_pfm_round_trip_is_exact_grey_and_colour(tmp_path, shape):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    write_pfm(tmp_path / "x.pfm", x)
    np.testing.assert_array_equal(read_pfm(tmp_path / "x.pfm"), x)


def test_pfm_reads_big_endian_with_a_comment_and_rejects_bad_files(tmp_path):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    (tmp_path / "be.pfm").write_bytes(b"Pf\n# made elsewhere\n3 2\n1.0\n" + x[::-1].astype(">f4").tobytes())
    np.testing.assert_array_equal(read_pfm(tmp_path / "be.pfm"), x)
    (tmp_path / "short.pfm").write_bytes(b"Pf\n3 2\n-1.0\n" + b"\0" * 8)
    with pytest.raises(DepthFileError, match="expected 6 floats, got 2"):
        read_pfm(tmp_path / "short.pfm")
    (tmp_path / "png.pfm").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(DepthFileError, match="expected a PFM header"):
        read_pfm(tmp_path / "png.pfm")
    with pytest.raises(ValueError, match=r"expected a map \(H, W\) or \(H, W, 3\)"):
        write_pfm(tmp_path / "bad.pfm", np.zeros((2, 3, 4), np.float32))
    assert not (tmp_path / "bad.pfm").exists()


def test_hypersim_ray_distance_becomes_planar_depth():
    # A fronto-parallel wall at z = 3 m seen by Hypersim's camera: every ray's distance is 3 * ||(x, y, f)|| / f.
    h, w = 768, 1024
    f = depth_files.HYPERSIM_FOCAL_PX
    x = np.arange(w) - (w - 1) / 2
    y = np.arange(h)[:, None] - (h - 1) / 2
    distance = 3.0 * np.sqrt(x**2 + y**2 + f**2) / f
    np.testing.assert_allclose(hypersim_distance_to_depth(distance), 3.0, rtol=1e-6)
    # At half resolution the focal halves with the width: the same wall is still planar.
    np.testing.assert_allclose(
        hypersim_distance_to_depth(distance[::2, ::2] * 0 + 3.0)[0, 0],
        3.0 * (f / 2) / np.sqrt(((w / 2 - 1) / 2) ** 2 + ((h / 2 - 1) / 2) ** 2 + (f / 2) ** 2),
        rtol=1e-6,
    )


def test_png16_counts_strict_and_lenient(tmp_path):
    import cv2

    counts = np.array([[0, 1, 65535], [256, 1000, 42]], np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), counts)
    np.testing.assert_array_equal(depth_files.read_png16(tmp_path / "d.png"), counts)
    cv2.imwrite(str(tmp_path / "rgb.png"), np.dstack([counts.astype(np.uint8)] * 3))
    np.testing.assert_array_equal(depth_files.read_png16(tmp_path / "rgb.png", strict=False), counts.astype(np.uint8))
    with pytest.raises(DepthFileError, match="expected a 16-bit single-channel PNG, got uint8"):
        depth_files.read_png16(tmp_path / "rgb.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DepthFileError, match="not a readable PNG"):
        depth_files.read_png16(tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError, match="no such file"):
        depth_files.read_png16(tmp_path / "missing.png")
