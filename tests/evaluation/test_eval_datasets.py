import math
import os
from pathlib import Path

import numpy as np
import pytest
from eval_fixtures import depth_image, ramp_depth, write_dpt, write_png16, write_rgb
from PIL import Image

from depth_anything_v2.evaluation.datasets import (
    BENCHMARKS,
    DIODE,
    ETH3D,
    KITTI,
    PAPER_BENCHMARKS,
    VKITTI2,
    DatasetError,
    DatasetNotFoundError,
    EvalSettings,
    Hypersim,
    NYUv2,
    Sintel,
    get_benchmark,
    hypersim_distance_to_depth,
    read_dpt,
)

h5py = pytest.importorskip("h5py")


# ------------------------------------------------------------------------------------------------- KITTI


def _kitti(root: Path) -> None:
    h, w = 375, 1242
    rng = np.random.default_rng(0)
    for drive, frame, gt_split in (("0002", "0000000069", "val"), ("0009", "0000000016", "train")):
        d = f"2011_09_26_drive_{drive}_sync"
        image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        write_rgb(root / "raw_data" / "2011_09_26" / d / "image_02" / "data" / f"{frame}.png", image)
        depth = np.zeros((h, w), np.uint16)
        depth[200:, :] = 2560  # 10 m
        depth[-1, -1] = 65535  # 255.996 m
        path = root / "data_depth_annotated" / gt_split / d / "proj_depth" / "groundtruth" / "image_02"
        write_png16(path / f"{frame}.png", depth)
    (root / "eigen_test_files_with_gt.txt").write_text(
        # original BTS form (date folder), a frame without ground truth, and the date-less variant
        "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png "
        "2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png 721.5377\n"
        "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000075.png None 721.5377\n"
        "2011_09_26_drive_0009_sync/image_02/data/0000000016.png "
        "2011_09_26_drive_0009_sync/proj_depth/groundtruth/image_02/0000000016.png 721.5377\n"
    )


def test_kitti_eigen_split_annotated_depth_and_kb_crop(tmp_path):
    _kitti(tmp_path)
    r = KITTI(tmp_path)
    assert len(r) == 2
    d = r.describe()
    assert (d["split_entries"], d["with_ground_truth"], d["kb_crop"]) == (3, 2, True)
    s = r[0]
    assert s.key == "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png"
    assert s.image_rgb.shape == (352, 1216, 3) and s.depth_m.shape == (352, 1216)
    # KB crop: bottom 352 rows (from 23), columns 13..1229 of the 1242-wide frame
    assert s.depth_m[200 - 23, 0] == 10.0 and s.depth_m[200 - 24, 0] == 0.0
    assert s.depth_m[-1, -1] == 10.0  # original column 1228; the 255.996 m pixel at column 1241 is cropped away
    assert not s.valid[0, 0] and s.valid[-1, 0]
    full = KITTI(tmp_path, kb_crop=False)[1]  # the train-folder frame
    assert full.image_rgb.shape == (375, 1242, 3)
    assert full.depth_m[-1, -1] == pytest.approx(65535 / 256)
    raw = np.asarray(
        Image.open(tmp_path / "raw_data/2011_09_26/2011_09_26_drive_0009_sync/image_02/data/0000000016.png")
    )
    np.testing.assert_array_equal(full.image_rgb, raw)


def test_kitti_missing_split_file_and_missing_frame(tmp_path):
    (tmp_path / "raw_data").mkdir()
    with pytest.raises(DatasetNotFoundError, match="no split file"):
        KITTI(tmp_path)
    (tmp_path / "eigen_test_files_with_gt.txt").write_text(
        "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000001.png "
        "2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000001.png\n"
    )
    r = KITTI(tmp_path)
    with pytest.raises(DatasetError, match=r"0000000001\.png: no such file"):
        r[0]


# --------------------------------------------------------------------------------------------------- NYU


def _nyu(root: Path, n=4, h=6, w=8) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import savemat

    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (n, h, w, 3), dtype=np.uint8)
    depths = rng.uniform(0.5, 9.5, (n, h, w)).astype(np.float32)
    raw = depths.copy()
    raw[:, 0, 0] = 0
    path = root / "nyu_depth_v2_labeled.mat"
    # MATLAB v7.3: an HDF5 file behind a 512-byte user block holding the MATLAB header; arrays column-major,
    # i.e. transposed in h5py's (row-major) view: images (N, 3, W, H), depths (N, W, H).
    with h5py.File(path, "w", userblock_size=512) as f:
        f["images"] = images.transpose(0, 3, 2, 1)
        f["depths"] = depths.transpose(0, 2, 1)
        f["rawDepths"] = raw.transpose(0, 2, 1)
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .")
    savemat(root / "splits.mat", {"testNdxs": np.array([[4], [2]]), "trainNdxs": np.array([[1], [3]])})
    return images, depths


def test_nyu_labelled_mat_with_official_split(tmp_path):
    images, depths = _nyu(tmp_path)
    r = NYUv2(tmp_path)
    assert len(r) == 2 and [r.key(i) for i in range(2)] == ["nyu/0004", "nyu/0002"]  # 1-based testNdxs
    s = r[0]
    np.testing.assert_array_equal(s.image_rgb, images[3])
    np.testing.assert_array_equal(s.depth_m, depths[3])
    assert s.image_rgb.shape == (6, 8, 3) and s.valid.all()
    assert len(NYUv2(tmp_path, split="train")) == 2 and len(NYUv2(tmp_path, split="all")) == 4
    raw = NYUv2(tmp_path, depth_field="rawDepths")[1]
    assert not raw.valid[0, 0] and raw.valid.sum() == 6 * 8 - 1
    with pytest.raises(ValueError, match="expected NYU split"):
        NYUv2(tmp_path, split="val")


def test_nyu_missing_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"nyu_depth_v2_labeled\.mat not found"):
        NYUv2(tmp_path)
    (tmp_path / "nyu_depth_v2_labeled.mat").write_bytes(b"not hdf5")
    with pytest.raises(DatasetNotFoundError, match=r"splits\.mat not found"):
        NYUv2(tmp_path)


# ------------------------------------------------------------------------------------------------ Sintel


def test_sintel_final_pass_and_dpt(tmp_path):
    rng = np.random.default_rng(2)
    for scene in ("alley_1", "bamboo_2"):
        for frame in (1, 2):
            depth = rng.uniform(0.5, 100, (5, 7)).astype(np.float32)
            depth[0, 0] = np.inf
            write_dpt(tmp_path / "training" / "depth" / scene / f"frame_{frame:04d}.dpt", depth)
            write_rgb(tmp_path / "training" / "final" / scene / f"frame_{frame:04d}.png", depth_image(depth))
    r = Sintel(tmp_path)
    assert len(r) == 4 and r.key(2) == "bamboo_2/frame_0001"
    s = r[3]
    expected = read_dpt(tmp_path / "training/depth/bamboo_2/frame_0002.dpt")
    np.testing.assert_array_equal(s.depth_m, expected)
    assert s.depth_m.shape == (5, 7) and not s.valid[0, 0] and s.valid.sum() == 34
    assert s.meta["scene"] == "bamboo_2"
    with pytest.raises(DatasetNotFoundError, match="training/clean"):
        Sintel(tmp_path, render_pass="clean")


def test_dpt_rejects_wrong_tag_and_truncation(tmp_path):
    p = tmp_path / "x.dpt"
    write_dpt(p, np.ones((3, 4), np.float32))
    assert read_dpt(p).shape == (3, 4)
    data = p.read_bytes()
    p.write_bytes(data[:-4])
    with pytest.raises(DatasetError, match="expected 60 bytes for 4 x 3, got 56"):
        read_dpt(p)
    p.write_bytes(b"\x00" * 4 + data[4:])
    with pytest.raises(DatasetError, match=r"expected the \.dpt tag"):
        read_dpt(p)


# ------------------------------------------------------------------------------------------------- ETH3D


def test_eth3d_raw_float_depth_with_inf(tmp_path):
    h, w = 6, 9
    rng = np.random.default_rng(3)
    for scene, names in (("courtyard", ["DSC_0286.JPG", "DSC_0287.JPG"]), ("office", ["DSC_0219.JPG"])):
        for name in names:
            write_rgb(tmp_path / scene / "images" / "dslr_images" / name, rng.integers(0, 255, (h, w, 3), np.uint8))
            depth = rng.uniform(1, 30, (h, w)).astype("<f4")
            depth[2, :] = np.inf
            out = tmp_path / scene / "ground_truth_depth" / "dslr_images" / name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(depth.tobytes())  # headerless row-major float32
    r = ETH3D(tmp_path)
    assert len(r) == 3 and r.key(0) == "courtyard/images/dslr_images/DSC_0286.JPG"
    assert r.describe()["scenes"] == 2
    s = r[2]
    raw = np.fromfile(tmp_path / "office/ground_truth_depth/dslr_images/DSC_0219.JPG", dtype="<f4").reshape(h, w)
    np.testing.assert_array_equal(s.depth_m, raw)
    assert not s.valid[2].any() and s.valid.sum() == (h - 1) * w
    # a depth file of the wrong size is a per-sample error naming the expected size
    (tmp_path / "office/ground_truth_depth/dslr_images/DSC_0219.JPG").write_bytes(b"\0" * 16)
    with pytest.raises(DatasetError, match=r"expected 216 bytes \(float32 9 x 6"):
        r[2]


# ------------------------------------------------------------------------------------------------- DIODE


def test_diode_val_indoors_outdoor_with_masks(tmp_path, make_diode):
    make_diode(tmp_path, n_indoors=2, n_outdoor=3, size=(6, 8))
    r = DIODE(tmp_path)
    assert len(r) == 5 and r.key(0).startswith("indoors/scene_00019/scan_00000/")
    s = r[4]
    assert s.meta["scene_type"] == "outdoor" and s.depth_m.shape == (6, 8)
    assert not s.valid[0].any() and s.valid[1:].all()  # row 0 masked out in the fixture
    stem = tmp_path / "val" / r.key(4)
    np.testing.assert_array_equal(s.depth_m, np.load(str(stem.with_suffix("")) + "_depth.npy")[..., 0])
    assert len(DIODE(tmp_path, scene_types=("outdoor",))) == 3
    assert len(DIODE(tmp_path / "val", scene_types=("indoors",))) == 2  # pointing at val/ directly works too
    os.remove(str(stem.with_suffix("")) + "_depth_mask.npy")
    with pytest.raises(DatasetError, match=r"_depth_mask\.npy"):
        r[4]


# ---------------------------------------------------------------------------------------------- Hypersim


def test_hypersim_distance_to_planar_depth_matches_the_reference_formula():
    dist = np.full((768, 1024), 5.0, np.float32)
    depth = hypersim_distance_to_depth(dist)
    # centre pixel (x, y offsets 0.5 px): almost the distance; corner: dist * f / ||(511.5, 383.5, f)||
    assert depth[384, 512] == pytest.approx(5.0 * 886.81 / math.sqrt(0.5**2 + 0.5**2 + 886.81**2), rel=1e-6)
    assert depth[0, 0] == pytest.approx(5.0 * 886.81 / math.sqrt(511.5**2 + 383.5**2 + 886.81**2), rel=1e-6)


def _hypersim(root: Path, h=6, w=8) -> None:
    rng = np.random.default_rng(4)
    rows = ["scene_name,camera_name,frame_id,included_in_public_release,exclude_reason,split_partition_name"]
    for scene, frame, part, public in (
        ("ai_001_001", 0, "test", "True"),
        ("ai_001_001", 1, "train", "True"),
        ("ai_002_003", 7, "test", "True"),
        ("ai_002_003", 8, "test", "False"),
    ):
        rows.append(f"{scene},cam_00,{frame},{public},,{part}")
        img = root / scene / "images" / "scene_cam_00_final_preview" / f"frame.{frame:04d}.tonemap.jpg"
        write_rgb(img, rng.integers(0, 255, (h, w, 3), np.uint8))
        dist = rng.uniform(1, 15, (h, w)).astype(np.float16)
        dist[0, 0] = np.nan
        h5 = root / scene / "images" / "scene_cam_00_geometry_hdf5" / f"frame.{frame:04d}.depth_meters.hdf5"
        h5.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(h5, "w") as f:
            f.create_dataset("dataset", data=dist, compression="gzip")
    (root / "metadata_images_split_scene_v1.csv").write_text("\n".join(rows) + "\n")


def test_hypersim_official_split_and_reference_split_file(tmp_path):
    _hypersim(tmp_path)
    r = Hypersim(tmp_path)
    assert [r.key(i) for i in range(len(r))] == [
        "ai_001_001/images/scene_cam_00_final_preview/frame.0000.tonemap.jpg",
        "ai_002_003/images/scene_cam_00_final_preview/frame.0007.tonemap.jpg",
    ]
    s = r[1]
    with h5py.File(tmp_path / "ai_002_003/images/scene_cam_00_geometry_hdf5/frame.0007.depth_meters.hdf5") as f:
        dist = np.asarray(f["dataset"], np.float32)
    f_px = 886.81 * 8 / 1024  # focal scaled to the fixture's width
    expected = dist[3, 4] * f_px / math.sqrt(0.5**2 + 0.5**2 + f_px**2)
    assert s.depth_m[3, 4] == pytest.approx(expected, rel=1e-5)
    assert not s.valid[0, 0] and s.depth_m[0, 0] == 0 and s.valid.sum() == 47
    assert len(Hypersim(tmp_path, split="train")) == 1
    # The reference's own list, written on another machine: re-rooted at the ai_XXX_YYY folder.
    lst = tmp_path / "val.txt"
    lst.write_text(
        "/mnt/bn/x/HyperSim/all/ai_001_001/images/scene_cam_00_final_preview/frame.0001.tonemap.jpg "
        "/mnt/bn/x/HyperSim/all/ai_001_001/images/scene_cam_00_geometry_hdf5/frame.0001.depth_meters.hdf5\n"
    )
    r2 = Hypersim(tmp_path, split_file=lst)
    assert len(r2) == 1 and r2[0].image_rgb.shape == (6, 8, 3)


# ---------------------------------------------------------------------------------------------- VKITTI2


def test_vkitti2_centimetre_png_and_sky(tmp_path):
    rng = np.random.default_rng(5)
    for scene in ("Scene01", "Scene02"):
        for i in range(2):
            base = tmp_path / scene / "clone" / "frames"
            write_rgb(base / "rgb" / "Camera_0" / f"rgb_{i:05d}.jpg", rng.integers(0, 255, (4, 6, 3), np.uint8))
            depth = np.full((4, 6), 1234, np.uint16)  # 12.34 m
            depth[0] = 65535  # sky
            write_png16(base / "depth" / "Camera_0" / f"depth_{i:05d}.png", depth)
    r = VKITTI2(tmp_path)
    assert len(r) == 4 and r.key(3) == "Scene02/clone/frames/rgb/Camera_0/rgb_00001.jpg"
    s = r[0]
    assert s.depth_m[1, 0] == pytest.approx(12.34) and s.depth_m[0, 0] == pytest.approx(655.35)
    assert len(VKITTI2(tmp_path, scenes=["Scene02"])) == 2
    with pytest.raises(DatasetNotFoundError, match="no SceneXX"):
        VKITTI2(tmp_path, variations=("fog",))


# --------------------------------------------------------------------------------------------- the table


def test_benchmark_table_and_errors(tmp_path):
    assert set(PAPER_BENCHMARKS) <= set(BENCHMARKS)
    assert get_benchmark("kitti").settings == EvalSettings(1e-3, 80.0, "eigen", "scale_shift_disparity")
    assert get_benchmark("nyu").settings.crop == "nyu_eigen" and get_benchmark("nyu").settings.max_depth == 10
    assert get_benchmark("hypersim").settings.alignment == "none" and get_benchmark("vkitti2").metric
    assert get_benchmark("eth3d").settings.to_dict()["max_depth"] is None  # inf -> JSON null
    with pytest.raises(ValueError, match="unknown benchmark 'middlebury'"):
        get_benchmark("middlebury")
    with pytest.raises(DatasetNotFoundError, match="does not exist; expected layout"):
        Sintel(tmp_path / "nowhere")
    with pytest.raises(DatasetNotFoundError, match="no <scene>/images/dslr_images"):
        ETH3D(tmp_path)
    with pytest.raises(DatasetError, match="not a readable image"):
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"\x89PNG broken")
        from depth_anything_v2.evaluation.datasets import read_rgb

        read_rgb(bad)


def test_fixture_depth_image_roundtrip():
    from eval_fixtures import image_depth

    d = ramp_depth(3, 4, 0)
    np.testing.assert_allclose(image_depth(depth_image(d)), d, rtol=1e-6)
