import math

import numpy as np
import pytest
import torch

from depth_anything_v2.evaluation.metrics import (
    METRIC_NAMES,
    AlignmentError,
    MetricAccumulator,
    align_prediction,
    compute_metrics,
    crop_mask,
    evaluation_mask,
    pixel_sums,
    score_pairs,
)


def reference_eval_depth(pred: torch.Tensor, target: torch.Tensor) -> dict:
    """The formulas of the reference's metric_depth/util/metric.py, restated as an independent oracle."""
    thresh = torch.max(target / pred, pred / target)
    diff = pred - target
    diff_log = torch.log(pred) - torch.log(target)
    return {
        "d1": (thresh < 1.25).double().mean().item(),
        "d2": (thresh < 1.25**2).double().mean().item(),
        "d3": (thresh < 1.25**3).double().mean().item(),
        "abs_rel": torch.mean(torch.abs(diff) / target).item(),
        "sq_rel": torch.mean(diff**2 / target).item(),
        "rmse": torch.sqrt(torch.mean(diff**2)).item(),
        "rmse_log": torch.sqrt(torch.mean(diff_log**2)).item(),
        "log10": torch.mean(torch.abs(torch.log10(pred) - torch.log10(target))).item(),
        "silog": torch.sqrt(torch.pow(diff_log, 2).mean() - 0.5 * torch.pow(diff_log.mean(), 2)).item(),
    }


def test_metrics_hand_computed():
    # pred [1, 2] vs gt [1, 4]: errors 0 and -2; log errors 0 and -ln 2; ratios 1 and 2.
    m = compute_metrics(np.array([1.0, 2.0]), np.array([1.0, 4.0]))
    ln2 = math.log(2)
    assert m["abs_rel"] == pytest.approx(0.25)  # (0 + 2/4) / 2
    assert m["sq_rel"] == pytest.approx(0.5)  # (0 + 4/4) / 2
    assert m["rmse"] == pytest.approx(math.sqrt(2))  # sqrt((0 + 4) / 2)
    assert m["rmse_log"] == pytest.approx(ln2 / math.sqrt(2))
    assert m["log10"] == pytest.approx(math.log10(2) / 2)
    assert m["silog"] == pytest.approx(ln2 * math.sqrt(3 / 8))  # sqrt(ln2²/2 - 0.5 (ln2/2)²)
    # ratio 2: not < 1.25, not < 1.5625, not < 1.953125
    assert (m["d1"], m["d2"], m["d3"]) == (0.5, 0.5, 0.5)
    m = compute_metrics(np.array([1.0, 1.9, 1.2]), np.array([1.0, 1.0, 1.0]))  # ratios 1, 1.9, 1.2
    assert m["d1"] == pytest.approx(2 / 3) and m["d2"] == pytest.approx(2 / 3) and m["d3"] == 1.0


def test_metrics_match_reference_formulas_on_random_data():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 80, size=5000)
    pred = gt * rng.uniform(0.6, 1.6, size=5000)
    ours = compute_metrics(pred, gt)
    ref = reference_eval_depth(torch.from_numpy(pred), torch.from_numpy(gt))
    for k in METRIC_NAMES:
        assert ours[k] == pytest.approx(ref[k], rel=1e-10), k


def test_per_image_mean_versus_pooled():
    acc = MetricAccumulator()
    # Image A: 1 pixel, abs_rel 0.5; image B: 3 pixels, abs_rel 0.
    acc.add(pixel_sums(np.array([1.5]), np.array([1.0])))
    acc.add(pixel_sums(np.array([2.0, 3.0, 4.0]), np.array([2.0, 3.0, 4.0])))
    assert acc.mean()["abs_rel"] == pytest.approx(0.25)  # (0.5 + 0) / 2 images
    assert acc.pooled()["abs_rel"] == pytest.approx(0.125)  # 0.5 / 4 pixels
    assert acc.mean()["d1"] == pytest.approx(0.5) and acc.pooled()["d1"] == pytest.approx(0.75)
    assert len(acc) == 2
    assert all(math.isnan(v) for v in MetricAccumulator().mean().values())


def test_kitti_crops_follow_the_standard_fractions():
    h, w = 375, 1242
    garg = crop_mask(h, w, "garg")
    rows, cols = np.nonzero(garg)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (153, 371, 44, 1197)
    eigen = crop_mask(h, w, "eigen")
    rows, cols = np.nonzero(eigen)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (124, 342, 44, 1197)
    # On the KB-cropped frame (352 x 1216) the fractions give a different window.
    rows, _ = np.nonzero(crop_mask(352, 1216, "eigen"))
    assert (rows.min(), rows.max() + 1) == (117, 321)


def test_nyu_eigen_crop():
    m = crop_mask(480, 640, "nyu_eigen")
    rows, cols = np.nonzero(m)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (45, 471, 41, 601)
    assert m.sum() == 426 * 560
    assert crop_mask(240, 320, "nyu_eigen").sum() == (236 - 22) * (300 - 20)  # same fractions, rounded
    assert crop_mask(4, 5, "none").all()
    with pytest.raises(ValueError, match="expected crop one of"):
        crop_mask(4, 5, "square")


def test_evaluation_mask_range_validity_and_nan():
    gt = np.array([[0.0, 0.001, 5.0], [10.0, 10.5, np.nan]], dtype=np.float32)
    valid = np.array([[True, True, False], [True, True, True]])
    m = evaluation_mask(gt, valid, min_depth=1e-3, max_depth=10.0)
    # inclusive range [1e-3, 10]; 0 and 10.5 out, NaN out, (0, 2) invalid
    assert m.tolist() == [[False, True, False], [True, False, False]]
    assert evaluation_mask(gt, None, min_depth=1e-3, max_depth=math.inf).sum() == 4
    with pytest.raises(ValueError, match="expected valid mask of shape"):
        evaluation_mask(gt, valid[:1])


def _gt(h=12, w=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(1.0, 9.0, size=(h, w))


def test_disparity_alignment_recovers_affine_disparity_exactly():
    gt = _gt()
    mask = np.ones_like(gt, dtype=bool)
    pred = (1.0 / gt - 0.05) / 3.0  # disparity with unknown scale 3 and shift 0.05 (float64)
    depth, fit = align_prediction(pred, gt, mask, alignment="scale_shift_disparity", kind="disparity", max_depth=10)
    assert fit["scale"] == pytest.approx(3.0, rel=1e-9) and fit["shift"] == pytest.approx(0.05, rel=1e-9)
    np.testing.assert_allclose(depth, gt, rtol=1e-9)
    m = compute_metrics(depth, gt)
    assert m["abs_rel"] < 1e-9 and m["d1"] == 1.0


def test_disparity_alignment_clamps_nonpositive_disparity_to_max_depth():
    gt = _gt()
    mask = np.ones_like(gt, dtype=bool)
    mask[0, 0] = False
    pred = 1.0 / gt
    pred[0, 0] = -5.0  # outside the fit; aligned disparity stays negative -> clamped to 1 / max_depth
    depth, _ = align_prediction(pred, gt, mask, alignment="scale_shift_disparity", kind="disparity", max_depth=20)
    assert depth[0, 0] == 20.0
    depth, _ = align_prediction(
        pred, gt, mask, alignment="scale_shift_disparity", kind="disparity", min_depth=2.0, max_depth=math.inf
    )
    assert depth[0, 0] == pytest.approx(gt[mask].max())  # no cap: the largest valid ground truth
    assert depth.min() >= 2.0


def test_depth_space_alignments():
    gt = _gt(seed=1)
    mask = np.ones_like(gt, dtype=bool)
    depth, fit = align_prediction(2 * gt - 1, gt, mask, alignment="scale_shift_depth", kind="metric", max_depth=50)
    assert fit == pytest.approx({"scale": 0.5, "shift": 0.5})
    np.testing.assert_allclose(depth, gt, rtol=1e-9)
    depth, fit = align_prediction(4 * gt, gt, mask, alignment="scale", kind="metric", max_depth=50)
    assert fit["scale"] == pytest.approx(0.25)
    np.testing.assert_allclose(depth, gt, rtol=1e-9)
    depth, fit = align_prediction(0.1 * gt, gt, mask, alignment="median", kind="metric", max_depth=50)
    assert fit["scale"] == pytest.approx(10.0)
    # A relative disparity model in depth space: 1/disparity is depth up to scale here (no shift).
    depth, fit = align_prediction(3.0 / gt, gt, mask, alignment="scale", kind="disparity", max_depth=50)
    np.testing.assert_allclose(depth, gt, rtol=1e-9)


def test_none_alignment_clips_metric_and_rejects_disparity():
    gt = _gt(seed=2)
    mask = np.ones_like(gt, dtype=bool)
    pred = gt.copy()
    pred[0, 0] = 100.0
    pred[0, 1] = 0.0
    depth, fit = align_prediction(pred, gt, mask, alignment="none", kind="metric", min_depth=0.5, max_depth=10)
    assert fit == {} and depth[0, 0] == 10.0 and depth[0, 1] == 0.5
    with pytest.raises(AlignmentError, match="needs a metric prediction"):
        align_prediction(pred, gt, mask, alignment="none", kind="disparity")
    with pytest.raises(ValueError, match="expected alignment one of"):
        align_prediction(pred, gt, mask, alignment="affine", kind="metric")


def test_score_pairs_skips_nearly_empty_images_and_scores_the_rest():
    gt1 = _gt(seed=3).astype(np.float32)
    gt2 = _gt(seed=4).astype(np.float32)
    empty = np.zeros((4, 4), dtype=bool)
    out = score_pairs(
        [
            (1.0 / gt1 * 7 + 0.2, gt1, None),  # perfect after alignment
            (1.0 / gt2, gt2, None),  # perfect
            (np.ones((4, 4)), np.ones((4, 4)), empty),  # skipped: 0 valid pixels
        ],
        alignment="scale_shift_disparity",
        kind="disparity",
        max_depth=10,
    )
    assert out["num_images"] == 2 and out["num_skipped"] == 1
    assert out["metrics"]["abs_rel"] < 1e-6 and out["metrics"]["d1"] == 1.0
    # Metric predictions scored as they are: 10% too far everywhere.
    out = score_pairs([(gt1 * 1.1, gt1, None)], alignment="none", kind="metric", max_depth=20)
    assert out["metrics"]["abs_rel"] == pytest.approx(0.1, rel=1e-6)
    assert out["metrics_pooled"]["rmse"] == pytest.approx(np.sqrt(np.mean((0.1 * gt1.astype(np.float64)) ** 2)))
    with pytest.raises(ValueError, match="expected prediction of the ground truth's shape"):
        score_pairs([(np.ones((2, 2)), np.ones((3, 3)), None)])
