import numpy as np
import pytest
import torch

from depth_anything_v2.data.transforms import (
    ColorJitter,
    GaussianBlur,
    RandomCrop,
    RandomHorizontalFlip,
    ResizeShorterSide,
    cutmix_batch,
    eval_transform,
    train_transform,
)
from depth_anything_v2.training.losses import DepthLoss


def _sample(h=30, w=50, seed=0):
    rng = np.random.default_rng(seed)
    # Labels encode their own coordinates, so any crop/flip can be checked against the image exactly.
    rows, cols = np.mgrid[0:h, 0:w]
    image = np.stack([rows * 5 % 256, cols * 5 % 256, rng.integers(0, 256, (h, w))], -1).astype(np.uint8)
    return {
        "image_rgb": image,
        "disparity": (rows * 1000 + cols).astype(np.float32),
        "valid_mask": rng.random((h, w)) > 0.3,
        "key": "k",
    }


def test_resize_shorter_side_sizes_and_nearest_labels():
    s = _sample(30, 50)
    out = ResizeShorterSide(518)(s)
    assert out["image_rgb"].shape == (518, 863, 3)  # 50 * 518 / 30 = 863.3, rounded
    assert out["disparity"].shape == (518, 863) and out["valid_mask"].dtype == bool
    # Nearest: every label value already existed (no interpolation across depth edges).
    assert set(np.unique(out["disparity"])) <= set(np.unique(s["disparity"]))
    assert out["key"] == "k"
    # Snapped to multiples of 14 with the reference's rule (1080 x 1920 -> 518 x 924).
    big = {"image_rgb": np.zeros((1080, 1920, 3), np.uint8), "valid_mask": np.ones((1080, 1920), bool)}
    assert ResizeShorterSide(518, multiple_of=14)(big)["image_rgb"].shape == (518, 924, 3)
    assert eval_transform(518)(big)["valid_mask"].shape == (518, 924)
    portrait = ResizeShorterSide(518)({"image_rgb": np.zeros((640, 480, 3), np.uint8)})
    assert portrait["image_rgb"].shape == (691, 518, 3)


def test_random_crop_keeps_image_and_labels_aligned():
    s = _sample(30, 50)
    g = torch.Generator().manual_seed(0)
    offsets = set()
    for _ in range(10):
        out = RandomCrop((12, 20), generator=g)(s)
        assert out["image_rgb"].shape == (12, 20, 3) and out["disparity"].shape == (12, 20)
        top, left = divmod(int(out["disparity"][0, 0]), 1000)
        offsets.add((top, left))
        np.testing.assert_array_equal(out["image_rgb"], s["image_rgb"][top : top + 12, left : left + 20])
        np.testing.assert_array_equal(out["valid_mask"], s["valid_mask"][top : top + 12, left : left + 20])
    assert len(offsets) > 5  # really random
    # Smaller than the crop: padded, and padding is never a valid label.
    small = RandomCrop(40)(_sample(30, 50))
    assert small["image_rgb"].shape == (40, 40, 3)
    assert not small["valid_mask"][30:].any() and np.all(small["image_rgb"][30:] == 0)


def test_flip_and_photometric_transforms():
    s = _sample()
    flipped = RandomHorizontalFlip(p=1.0)(s)
    np.testing.assert_array_equal(flipped["image_rgb"], s["image_rgb"][:, ::-1])
    np.testing.assert_array_equal(flipped["disparity"], s["disparity"][:, ::-1])
    assert RandomHorizontalFlip(p=0.0)(s) is s
    g = torch.Generator().manual_seed(1)
    jittered = ColorJitter(p=1.0, generator=g)(s)
    assert jittered["image_rgb"].dtype == np.uint8 and not np.array_equal(jittered["image_rgb"], s["image_rgb"])
    assert jittered["disparity"] is s["disparity"]  # labels untouched
    blurred = GaussianBlur(sigma=(2.0, 2.0), p=1.0)(s)
    assert blurred["image_rgb"].astype(float).std() < s["image_rgb"].astype(float).std()
    with pytest.raises(ValueError, match="expected hue"):
        ColorJitter(hue=0.7)
    with pytest.raises(ValueError, match="share one"):
        RandomHorizontalFlip(p=1.0)({"image_rgb": np.zeros((4, 4, 3), np.uint8), "valid_mask": np.zeros((3, 4))})


def test_train_transform_is_seedable():
    s = _sample(40, 60)
    a = train_transform(28, color_jitter=True, blur=True, generator=torch.Generator().manual_seed(5))(s)
    b = train_transform(28, color_jitter=True, blur=True, generator=torch.Generator().manual_seed(5))(s)
    assert a["image_rgb"].shape == (28, 28, 3)
    for key in ("image_rgb", "disparity", "valid_mask"):
        np.testing.assert_array_equal(a[key], b[key])
    torch.manual_seed(3)  # the default generator drives it otherwise
    c = train_transform(28)(s)
    torch.manual_seed(3)
    np.testing.assert_array_equal(c["disparity"], train_transform(28)(s)["disparity"])


def test_cutmix_batch_regions_and_loss():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 16, 16, generator=g)
    disparity = torch.rand(4, 16, 16, generator=g)
    valid = torch.ones(4, 16, 16, dtype=torch.bool)
    valid[2, :4] = False
    batch = {"image": images, "disparity": disparity, "valid_mask": valid, "key": ["a", "b", "c", "d"]}
    out = cutmix_batch(batch, p=1.0, generator=torch.Generator().manual_seed(1))
    region = out["cutmix_region"]
    assert region.shape == (4, 16, 16) and region.any(dim=(1, 2)).all()
    for i in range(4):
        j = (i + 1) % 4
        r = region[i]
        assert torch.allclose(out["image"][i][:, r], images[j][:, r])
        assert torch.allclose(out["image"][i][:, ~r], images[i][:, ~r])
        assert torch.allclose(out["disparity"][i][r], disparity[j][r])
        assert torch.equal(out["valid_mask"][i][r], valid[j][r])
        # The region is one axis-aligned box.
        rows, cols = r.any(1).nonzero(), r.any(0).nonzero()
        assert r[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
    assert out["key"] == batch["key"]
    assert not cutmix_batch(batch, p=0.0)["cutmix_region"].any()
    # With labels from two differently-scaled sources, the region-aware loss is ~0 for a perfect prediction.
    pred = torch.rand(4, 16, 16, generator=g)
    label = torch.where(region, 3 * pred + 1, 0.5 * pred)
    assert float(DepthLoss()(pred, label, regions=region)) < 1e-5 < float(DepthLoss()(pred, label))
