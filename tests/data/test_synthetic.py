import numpy as np
import pytest
import torch

from depth_anything_v2.data.datasets import ImageDepthFolder
from depth_anything_v2.data.synthetic import (
    SceneConfig,
    SyntheticScenes,
    _Cylinder,
    _sample_scene,
    render_scene,
    write_synthetic_folder,
)


def test_render_is_deterministic_and_typed():
    a = render_scene(7, 48, 64)
    b = render_scene(7, 48, 64)
    c = render_scene(8, 48, 64)
    np.testing.assert_array_equal(a.image_rgb, b.image_rgb)
    np.testing.assert_array_equal(a.depth_m, b.depth_m)
    assert not np.array_equal(a.image_rgb, c.image_rgb)
    assert a.image_rgb.shape == (48, 64, 3) and a.image_rgb.dtype == np.uint8
    assert a.depth_m.shape == (48, 64) and a.depth_m.dtype == np.float32
    # Sky: +inf depth, not valid, flagged; everything else finite and positive.
    np.testing.assert_array_equal(a.sky_mask, np.isposinf(a.depth_m))
    np.testing.assert_array_equal(a.valid_mask, ~a.sky_mask)
    assert np.all(a.depth_m[a.valid_mask] > 0)


def test_ground_plane_depth_is_exact():
    # Ground only, camera pitched 10 degrees down, no roll: planar depth of row v is h / -(y component of the
    # ray (0, -(v - cy) / f, 1) rotated by the pitch), exactly.
    cfg = SceneConfig(indoor_probability=0.0, pitch_deg=(-10, -10), roll_deg=(0, 0), objects=False, noise_std=0)
    scene = render_scene(3, 60, 80, cfg)
    f, cy = scene.intrinsics[0, 0], scene.intrinsics[1, 2]
    pitch = np.radians(-10.0)
    y_cam = -(np.arange(60) - cy) / f
    y_world = np.cos(pitch) * y_cam + np.sin(pitch)
    with np.errstate(divide="ignore"):
        expected = np.where(y_world < 0, scene.camera["height_m"] / -y_world, np.inf)
    ground = np.isfinite(expected) & (expected < 400)  # beyond 500 m along the ray the ground turns into sky
    for col in (0, 40, 79):
        got = scene.depth_m[:, col].astype(np.float64)
        np.testing.assert_allclose(got[ground], expected[ground], rtol=2e-6)
    assert np.isposinf(scene.depth_m[: int(cy) - 10]).all()  # the horizon is above the centre: sky up there


def test_scene_variety_indoor_outdoor_and_thin_structures():
    scenes = [render_scene(i, 24, 32) for i in range(12)]
    assert {s.kind for s in scenes} == {"indoor", "outdoor"}
    assert all(not s.sky_mask.any() for s in scenes if s.kind == "indoor")  # a room has no sky
    assert sum(s.sky_mask.any() for s in scenes if s.kind == "outdoor") >= 3
    # Thin structures (poles, wires: radius <= 6 cm indoors, <= 20 cm outdoors) in most scenes.
    cfg = SceneConfig()
    thin = 0
    for i in range(20):
        _, shapes, _ = _sample_scene(np.random.default_rng(i), cfg)
        thin += any(isinstance(sh, _Cylinder) and sh.radius <= 0.2 for sh in shapes)
    assert thin >= 10


def test_dataset_items_and_targets():
    ds = SyntheticScenes(3, (40, 56), seed=5)
    assert len(ds) == 3
    item = ds[1]
    scene = ds.render(1)
    assert item["image"].shape == (3, 40, 56) and item["image"].dtype == torch.float32
    assert item["key"] == "synthetic-5-1"
    disp = item["disparity"].numpy()
    valid = item["valid_mask"].numpy()
    np.testing.assert_allclose(disp[scene.valid_mask], 1.0 / scene.depth_m[scene.valid_mask], rtol=1e-6)
    # Relative training: sky is valid with disparity 0.
    assert valid.all() and np.all(disp[scene.sky_mask] == 0)
    metric = SyntheticScenes(3, (40, 56), seed=5, target="depth", max_depth=20.0)[1]
    depth, mvalid = metric["depth_m"].numpy(), metric["valid_mask"].numpy()
    expect = scene.valid_mask & (scene.depth_m <= 20.0)
    np.testing.assert_array_equal(mvalid, expect)
    np.testing.assert_array_equal(depth[expect], scene.depth_m[expect])
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(ValueError, match="expected target"):
        SyntheticScenes(1, 8, target="inverse")


def test_write_folder_round_trip_and_resume(tmp_path):
    keys = write_synthetic_folder(tmp_path, 2, (30, 40), seed=9)
    assert keys == ["scene_0009_000000", "scene_0009_000001"]
    assert sorted(p.name for p in (tmp_path / "depth").iterdir()) == [k + ".npy" for k in keys]
    ds = ImageDepthFolder(tmp_path)
    scene = SyntheticScenes(2, (30, 40), seed=9).render(1)
    item = ds[1]
    assert item["key"] == keys[1]
    np.testing.assert_array_equal(item["valid_mask"].numpy(), np.ones((30, 40), bool))  # sky valid (disparity)
    np.testing.assert_allclose(item["disparity"].numpy(), np.where(scene.valid_mask, 1 / scene.depth_m, 0), rtol=1e-6)
    raw = ds.read_raw(1)
    np.testing.assert_array_equal(raw.image_rgb, scene.image_rgb)  # PNG is lossless
    np.testing.assert_array_equal(raw.sky_mask, scene.sky_mask)
    # Resuming keeps finished files (mtime unchanged) and adds the missing ones.
    before = (tmp_path / "images" / f"{keys[0]}.png").stat().st_mtime_ns
    write_synthetic_folder(tmp_path, 3, (30, 40), seed=9)
    assert (tmp_path / "images" / f"{keys[0]}.png").stat().st_mtime_ns == before
    assert len(ImageDepthFolder(tmp_path)) == 3
    assert not list(tmp_path.rglob(".*"))  # no temporary files left
