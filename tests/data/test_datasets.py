"""Each reader on a tiny fixture written in its dataset's exact on-disk layout and encoding."""

import logging

import cv2
import numpy as np
import pytest
import torch

from depth_anything_v2.configs import IMAGENET_MEAN, IMAGENET_STD
from depth_anything_v2.data.datasets import (
    IRS,
    BlendedMVS,
    Hypersim,
    ImageDepthFolder,
    SampleReadError,
    TartanAir,
    VirtualKITTI2,
    depth_to_disparity,
    read_pfm,
    write_pfm,
)

H, W = 6, 8


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _write_rgb(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image[..., ::-1])


def test_depth_to_disparity_handles_sky_and_invalid():
    depth = np.array([[2.0, np.inf, 0.0], [np.nan, -1.0, 4.0]], np.float32)
    disp, valid = depth_to_disparity(depth)
    np.testing.assert_array_equal(disp, [[0.5, 0, 0], [0, 0, 0.25]])
    np.testing.assert_array_equal(valid, [[True, True, False], [False, False, True]])  # sky valid
    _, valid_no_sky = depth_to_disparity(depth, sky_valid=False)
    assert not valid_no_sky[0, 1]
    _, masked = depth_to_disparity(depth, valid_mask=np.array([[False, True, True], [True, True, True]]))
    assert not masked[0, 0]


def test_image_is_imagenet_normalised(tmp_path):
    image = _image(1)
    _write_rgb(tmp_path / "images" / "a.png", image)
    (tmp_path / "depth").mkdir()
    np.save(tmp_path / "depth" / "a.npy", np.full((H, W), 2.0, np.float32))
    item = ImageDepthFolder(tmp_path)[0]
    expected = (image / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(item["image"].numpy(), expected.transpose(2, 0, 1), atol=1e-6)
    assert item["image"].dtype == torch.float32 and item["key"] == "a"


def test_hypersim(tmp_path):
    h5py = pytest.importorskip("h5py")
    scene = tmp_path / "ai_001_001" / "images"
    _write_rgb(scene / "scene_cam_00_final_preview" / "frame.0000.tonemap.jpg", _image())
    (scene / "scene_cam_00_geometry_hdf5").mkdir(parents=True)
    distance = np.full((H, W), 3.0, np.float16)  # the published files are float16
    distance[0, 0] = np.nan
    with h5py.File(scene / "scene_cam_00_geometry_hdf5" / "frame.0000.depth_meters.hdf5", "w") as f:
        f.create_dataset("dataset", data=distance)
    # Distractors the reader must ignore.
    _write_rgb(scene / "scene_cam_00_final_preview" / "frame.0000.color.jpg", _image())
    ds = Hypersim(tmp_path, target="depth", max_depth=20.0)
    assert len(ds) == 1
    item = ds[0]
    assert item["key"] == "ai_001_001/images/scene_cam_00_final_preview/frame.0000"
    f_px = 886.81 * W / 1024
    x = np.arange(W) - (W - 1) / 2
    y = np.arange(H) - (H - 1) / 2
    expected = 3.0 * f_px / np.sqrt(x[None] ** 2 + y[:, None] ** 2 + f_px**2)
    valid = item["valid_mask"].numpy()
    assert not valid[0, 0] and valid.sum() == H * W - 1
    np.testing.assert_allclose(item["depth_m"].numpy()[valid], expected[valid], rtol=1e-6)
    assert item["depth_m"][0, 0] == 0
    disp = Hypersim(tmp_path)[0]
    np.testing.assert_allclose(disp["disparity"].numpy()[valid], 1 / expected[valid], rtol=1e-6)


def test_virtual_kitti2(tmp_path):
    base = tmp_path / "Scene01" / "clone" / "frames"
    _write_rgb(base / "rgb" / "Camera_0" / "rgb_00000.jpg", _image())
    depth_cm = np.full((H, W), 1234, np.uint16)
    depth_cm[0, :] = 65535  # sky
    depth_cm[1, 0] = 0
    depth_cm[2, 0] = 9000  # 90 m: beyond the metric models' 80 m
    (base / "depth" / "Camera_0").mkdir(parents=True)
    cv2.imwrite(str(base / "depth" / "Camera_0" / "depth_00000.png"), depth_cm)
    rel = VirtualKITTI2(tmp_path)[0]
    assert rel["key"] == "Scene01/clone/frames/rgb/Camera_0/rgb_00000"
    disp, valid = rel["disparity"].numpy(), rel["valid_mask"].numpy()
    assert np.all(disp[0] == 0) and valid[0].all() and rel["sky_mask"][0].all()  # sky: disparity 0, valid
    assert not valid[1, 0]
    assert disp[3, 3] == pytest.approx(1 / 12.34, rel=1e-6)
    metric = VirtualKITTI2(tmp_path, target="depth", max_depth=80.0)[0]
    mvalid = metric["valid_mask"].numpy()
    assert not mvalid[0].any() and not mvalid[1, 0] and not mvalid[2, 0]
    assert metric["depth_m"][3, 3].item() == pytest.approx(12.34, rel=1e-6)


def test_tartanair(tmp_path):
    base = tmp_path / "abandonedfactory" / "Easy" / "P000"
    _write_rgb(base / "image_left" / "000000_left.png", _image())
    _write_rgb(base / "image_right" / "000000_right.png", _image(1))
    depth = np.full((H, W), 3.5, np.float32)
    depth[0, 0] = 0.0
    depth[0, 1] = 20000.0  # sky dome
    (base / "depth_left").mkdir()
    np.save(base / "depth_left" / "000000_left_depth.npy", depth)
    ds = TartanAir(tmp_path)
    assert len(ds) == 1  # the right camera is not mixed in
    item = ds[0]
    assert item["key"] == "abandonedfactory/Easy/P000/image_left/000000_left"
    valid, disp = item["valid_mask"].numpy(), item["disparity"].numpy()
    assert not valid[0, 0] and valid[0, 1] and disp[0, 1] == 0 and item["sky_mask"][0, 1]
    assert disp[4, 4] == pytest.approx(1 / 3.5)
    with pytest.raises(FileNotFoundError, match="no samples"):
        TartanAir(tmp_path, exclude=("abandonedfactory",))


def test_irs(tmp_path):
    openexr = pytest.importorskip("OpenEXR")
    scene = tmp_path / "Home" / "ArchVizInterior03Data"
    _write_rgb(scene / "l_1.png", _image())
    _write_rgb(scene / "r_1.png", _image(2))
    disparity = np.full((H, W), 48.0, np.float32)
    disparity[0, 0] = 0.0
    rgb = np.repeat(disparity[..., None], 3, axis=2)  # IRS tools store the disparity in R, G and B
    header = {"compression": openexr.ZIP_COMPRESSION, "type": openexr.scanlineimage}
    with openexr.File(header, {"RGB": rgb}) as f:
        f.write(str(scene / "d_1.exr"))
    item = IRS(tmp_path, target="depth")[0]
    assert item["key"] == "Home/ArchVizInterior03Data/l_1"
    assert item["depth_m"][3, 3].item() == pytest.approx(0.1 * 480 / 48)  # baseline * focal / disparity = 1 m
    assert not item["valid_mask"][0, 0]
    # Single-channel files read the same.
    with openexr.File(header, {"Y": disparity * 2}) as f:
        f.write(str(scene / "d_1.exr"))
    assert IRS(tmp_path, target="depth")[0]["depth_m"][3, 3].item() == pytest.approx(0.5)


def test_blendedmvs_and_pfm(tmp_path):
    scan = tmp_path / "5a3ca9cb270f0c3f1b9e7cee"
    _write_rgb(scan / "blended_images" / "00000000.jpg", _image())
    _write_rgb(scan / "blended_images" / "00000000_masked.jpg", _image(3))
    depth = np.arange(H * W, dtype=np.float32).reshape(H, W) + 100.0
    depth[5, 7] = 0.0
    (scan / "rendered_depth_maps").mkdir()
    write_pfm(scan / "rendered_depth_maps" / "00000000.pfm", depth)
    # The PFM stores the bottom row first; check that against the raw bytes.
    raw = (scan / "rendered_depth_maps" / "00000000.pfm").read_bytes()
    first_value = np.frombuffer(raw[raw.index(b"-1.0\n") + 5 :][:4], "<f4")[0]
    assert first_value == depth[-1, 0]
    np.testing.assert_array_equal(read_pfm(scan / "rendered_depth_maps" / "00000000.pfm"), depth)
    ds = BlendedMVS(tmp_path, target="depth")
    assert len(ds) == 1  # *_masked.jpg skipped
    item = ds[0]
    assert not item["valid_mask"][5, 7] and item["valid_mask"].sum() == H * W - 1
    np.testing.assert_array_equal(item["depth_m"].numpy()[:5], depth[:5])


def test_generic_folder_units_formats_nesting_and_lists(tmp_path):
    (tmp_path / "depth" / "sub").mkdir(parents=True)
    _write_rgb(tmp_path / "images" / "sub" / "a.jpg", _image())
    _write_rgb(tmp_path / "images" / "b.PNG", _image(1))
    _write_rgb(tmp_path / "images" / "c.png", _image(2))
    cv2.imwrite(str(tmp_path / "depth" / "sub" / "a.png"), np.full((H, W), 2500, np.uint16))  # millimetres
    write_pfm(tmp_path / "depth" / "b.pfm", np.full((H, W), 2500.0, np.float32))
    c = np.full((H, W), 2500.0, np.float32)
    c[0, 0] = np.inf
    np.save(tmp_path / "depth" / "c.npy", c)
    ds = ImageDepthFolder(tmp_path, depth_unit="mm", target="depth")
    assert [r.key for r in ds.records] == ["b", "c", "sub/a"]
    for item in ds:
        assert item["depth_m"][3, 3].item() == pytest.approx(2.5)
    assert not ds[1]["valid_mask"][0, 0] and ds[1]["sky_mask"][0, 0]
    # A list file picks (and orders) the samples without walking the folders.
    (tmp_path / "list.txt").write_text("# comment\nimages/sub/a.jpg\nimages/c.png depth/c.npy\n")
    listed = ImageDepthFolder(tmp_path, depth_unit="mm", list_file=tmp_path / "list.txt")
    assert [r.key for r in listed.records] == ["sub/a", "c"]
    # Disparity labels: 1 / value.
    np.save(tmp_path / "depth" / "c.npy", np.full((H, W), 4.0, np.float32))
    disp_ds = ImageDepthFolder(tmp_path, label="disparity", target="depth", list_file=tmp_path / "list.txt")
    assert disp_ds[1]["depth_m"][2, 2].item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="expected depth_unit"):
        ImageDepthFolder(tmp_path, depth_unit="inch")


def test_unreadable_samples_raise_or_skip(tmp_path, caplog):
    (tmp_path / "depth").mkdir()
    for name in ("a", "b", "c"):
        _write_rgb(tmp_path / "images" / f"{name}.png", _image())
        np.save(tmp_path / "depth" / f"{name}.npy", np.full((H, W), 1.0, np.float32))
    (tmp_path / "images" / "b.png").write_bytes(b"not a png")
    (tmp_path / "depth" / "c.npy").unlink()
    ds = ImageDepthFolder(tmp_path)
    with pytest.raises(SampleReadError, match=r"b\.png"):
        ds[1]
    with pytest.raises(SampleReadError, match=r"c\.npy: no such label file"):
        ds[2]
    skipping = ImageDepthFolder(tmp_path, on_error="skip")
    with caplog.at_level(logging.WARNING):
        assert skipping[1]["key"] == "a"  # b and c unreadable: wraps round to the next good sample
    assert skipping.failed_keys == ["b", "c"]
    assert "b.png" in caplog.text
    # A label of the wrong size is an error that names the file.
    np.save(tmp_path / "depth" / "a.npy", np.ones((3, 3), np.float32))
    with pytest.raises(SampleReadError, match=r"a\.npy: expected a label of the image's size"):
        ds[0]
    with pytest.raises(FileNotFoundError, match="not a directory"):
        ImageDepthFolder(tmp_path / "missing")
