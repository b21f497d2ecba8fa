import math

import numpy as np
import pytest
import torch

from depth_anything_v2.training.losses import (
    DepthLoss,
    DepthLossConfig,
    feature_alignment_loss,
    gradient_matching_loss,
    masked_quantile,
    normalize_minmax,
    silog_loss,
    silog_totals,
    ssi_loss,
    ssi_residual,
    trim_mask,
)


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).float()


# Hand-computed case: pred 0 1 2 3, target 0 1 2 4 -> LS scale 1.3, shift -0.2, residual -0.2 0.1 0.4 -0.3.
PRED = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]], dtype=torch.float64)
TARGET = torch.tensor([[[0.0, 1.0], [2.0, 4.0]]], dtype=torch.float64)


def test_ssi_hand_computed_mse_mae():
    residual, valid = ssi_residual(PRED, TARGET)
    np.testing.assert_allclose(residual.numpy().ravel(), [-0.2, 0.1, 0.4, -0.3], atol=1e-12)
    assert valid.all()
    # MiDaS halves the squared error: (0.04 + 0.01 + 0.16 + 0.09) / (2 * 4).
    assert float(ssi_loss(PRED, TARGET, form="mse")) == pytest.approx(0.0375, abs=1e-12)
    assert float(ssi_loss(PRED, TARGET, form="mae")) == pytest.approx(0.25, abs=1e-12)


def test_gradient_loss_hand_computed():
    # |0.1+0.2| + |-0.3-0.4| (x) + |0.4+0.2| + |-0.3-0.1| (y) = 2.0 over 4 valid pixels; coarser scales hold a
    # single pixel (no pairs) and add 0.
    assert float(gradient_matching_loss(PRED, TARGET, scales=1)) == pytest.approx(0.5, abs=1e-12)
    assert float(gradient_matching_loss(PRED, TARGET, scales=4)) == pytest.approx(0.5, abs=1e-12)


def test_gradient_loss_multiscale_and_pair_validity():
    # Residual with a known pattern; mask out one pixel: pairs touching it must disappear, count drops.
    pred = _rand(1, 8, 8, seed=3).double()
    target = pred.clone()  # perfect fit -> aligned residual 0 ...
    mask = torch.ones(1, 8, 8, dtype=torch.bool)
    assert float(gradient_matching_loss(pred, target, mask)) == pytest.approx(0.0, abs=1e-10)
    # ... but a target spike at a masked-out pixel is ignored entirely, at every scale.
    target2 = target.clone()
    target2[0, 4, 4] = 1e6
    mask[0, 4, 4] = False
    assert float(gradient_matching_loss(pred, target2, mask)) == pytest.approx(0.0, abs=1e-10)
    # Independent numpy reference of the 4-scale sum on a random residual (least-squares fit done by torch).
    pred, target = _rand(2, 9, 11, seed=1).double(), _rand(2, 9, 11, seed=2).double()
    mask = _rand(2, 9, 11, seed=4) > 0.2
    r, _ = ssi_residual(pred, target, mask)
    r, m = r.numpy(), mask.numpy()
    total = 0.0
    for k in range(4):
        s = 2**k
        rk, mk = r[:, ::s, ::s] * m[:, ::s, ::s], m[:, ::s, ::s]
        gx = np.abs(np.diff(rk, axis=2)) * (mk[:, :, 1:] & mk[:, :, :-1])
        gy = np.abs(np.diff(rk, axis=1)) * (mk[:, 1:, :] & mk[:, :-1, :])
        total += (gx.sum() + gy.sum()) / mk.sum()
    assert float(gradient_matching_loss(pred, target, mask)) == pytest.approx(total, rel=1e-10)


def test_invariances_affine():
    target = _rand(3, 16, 16, seed=5)
    pred = 4.0 * target - 2.5  # the prediction's affine ambiguity is free
    assert float(ssi_loss(pred, target)) < 1e-9
    assert float(ssi_loss(pred, target, form="mae")) < 1e-5
    assert float(ssi_loss(pred, target, form="median_mad")) < 1e-5
    assert float(gradient_matching_loss(pred, target)) < 1e-5
    # Affine change of the *target* (positive scale): still ~0 against the unchanged prediction.
    assert float(ssi_loss(target, 0.3 * target + 7.0)) < 1e-9
    assert float(gradient_matching_loss(target, 0.3 * target + 7.0)) < 1e-5
    # DepthLoss normalises targets to [0, 1]: its value does not change under a positive affine target change.
    noisy = _rand(3, 16, 16, seed=6)
    crit = DepthLoss()
    a, b = crit(noisy, target), crit(noisy, 12.0 * target + 0.5)
    assert float(a) > 0.01
    assert float(a) == pytest.approx(float(b), rel=1e-4)


def test_median_mad_matches_numpy():
    pred, target = _rand(2, 5, 6, seed=7).double(), _rand(2, 5, 6, seed=8).double()
    mask = _rand(2, 5, 6, seed=9) > 0.3

    def norm(x, m):
        v = x[m]
        med = np.median(v)
        return (v - med) / max(np.mean(np.abs(v - med)), 1e-6)

    expected = [
        np.abs(norm(p, m) - norm(t, m)) for p, t, m in zip(pred.numpy(), target.numpy(), mask.numpy(), strict=True)
    ]
    batch = np.concatenate(expected).sum() / mask.sum().item()
    image = np.mean([e.mean() for e in expected])
    got_b = ssi_loss(pred, target, mask, form="median_mad", reduction="batch")
    got_i = ssi_loss(pred, target, mask, form="median_mad", reduction="image")
    assert float(got_b) == pytest.approx(batch, rel=1e-10)
    assert float(got_i) == pytest.approx(image, rel=1e-10)


def test_masked_quantile_matches_torch_quantile():
    x = _rand(3, 7, 5, seed=10)
    mask = _rand(3, 7, 5, seed=11) > 0.4
    got = masked_quantile(x, mask, 0.9)
    for i in range(3):
        assert float(got[i]) == pytest.approx(float(torch.quantile(x[i][mask[i]], 0.9)), abs=1e-6)
    assert float(masked_quantile(x, torch.zeros_like(mask), 0.9)[0]) == 0.0


def test_trim_drops_exactly_top_ten_percent_per_sample():
    # 100 distinct per-pixel losses per sample, known order: the 10 largest go, in each sample independently
    # (sample 1's losses are 1000x larger, a batch-wide threshold would drop only its pixels).
    g = torch.Generator().manual_seed(0)
    loss = torch.stack([torch.randperm(100, generator=g).float() + 1, (torch.randperm(100, generator=g) + 1) * 1e3])
    loss = loss.view(2, 10, 10)
    kept = trim_mask(loss, torch.ones_like(loss, dtype=torch.bool), 0.1)
    for i in range(2):
        assert int(kept[i].sum()) == 90
        assert float(loss[i][~kept[i]].min()) > float(loss[i][kept[i]].max())
    # End to end: 10 outlier pixels among 100 are exactly the ones ssi_loss(trim=0.1) ignores.
    target = _rand(1, 10, 10, seed=12).double()
    pred = 2.0 * target + 1.0
    outliers = torch.zeros(1, 10, 10, dtype=torch.bool)
    outliers.view(-1)[torch.randperm(100, generator=g)[:10]] = True
    target = torch.where(outliers, target + 5.0 + _rand(1, 10, 10, seed=13).double(), target)
    residual, _ = ssi_residual(pred, target)
    # MiDaS' trimmed loss: the kept pixels' sum over 2M, M counting the trimmed pixels too.
    expected = (residual[~outliers] ** 2).sum() / (2 * 100)
    assert float(ssi_loss(pred, target, trim=0.1)) == pytest.approx(float(expected), rel=1e-12)
    assert float(ssi_loss(pred, target, trim=0.1)) < 0.2 * float(ssi_loss(pred, target))


def test_masked_values_change_nothing():
    pred = _rand(2, 12, 12, seed=14).requires_grad_(True)
    target = _rand(2, 12, 12, seed=15)
    mask = _rand(2, 12, 12, seed=16) > 0.3
    target2 = torch.where(mask, target, torch.full_like(target, float("inf")))
    target2[0, 0, 0] = float("nan") if not mask[0, 0, 0] else target2[0, 0, 0]
    crit = DepthLoss(trim=0.1)
    for fn in (
        lambda t, p: ssi_loss(p, t, mask),
        lambda t, p: ssi_loss(p, t, mask, form="median_mad"),
        lambda t, p: gradient_matching_loss(p, t, mask),
        lambda t, p: crit(p, t, mask),
        lambda t, p: silog_loss(p + 0.1, t + 0.1, mask),
    ):
        a = fn(target, pred)
        (ga,) = torch.autograd.grad(a, pred)
        b = fn(target2, pred)
        (gb,) = torch.autograd.grad(b, pred)
        assert float(a.detach()) == pytest.approx(float(b.detach()), rel=1e-6)
        assert torch.allclose(ga, gb)
        assert torch.isfinite(ga).all() and (ga[~mask] == 0).all()


def test_gradients_flow_and_are_finite():
    pred = _rand(2, 20, 24, seed=17).requires_grad_(True)
    target = _rand(2, 20, 24, seed=18)
    for loss in (
        DepthLoss()(pred, target),
        DepthLoss(form="mae", trim=0.1)(pred, target),
        DepthLoss(form="median_mad")(pred, target),
        silog_loss(pred + 0.01, target + 0.01, max_depth=10.0),
    ):
        (g,) = torch.autograd.grad(loss, pred)
        assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_half_precision_inputs_are_scored_in_float32():
    target = _rand(2, 16, 16, seed=30)
    pred32 = 2.0 * target + 0.25 + 0.01 * _rand(2, 16, 16, seed=31)
    pred16 = pred32.to(torch.bfloat16).requires_grad_(True)
    loss16 = DepthLoss()(pred16, target)
    assert loss16.dtype == torch.float32
    loss32 = DepthLoss()(pred16.detach().float(), target)
    assert float(loss16.detach()) == pytest.approx(float(loss32), rel=1e-5)
    loss16.backward()
    assert pred16.grad.dtype == torch.bfloat16 and torch.isfinite(pred16.grad.float()).all()


def test_empty_masks_give_zero_without_nan():
    pred = _rand(2, 6, 6, seed=19).requires_grad_(True)
    target = _rand(2, 6, 6, seed=20)
    empty = torch.zeros(2, 6, 6, dtype=torch.bool)
    for reduction in ("batch", "image"):
        for loss in (
            ssi_loss(pred, target, empty, reduction=reduction),
            ssi_loss(pred, target, empty, form="median_mad", trim=0.1, reduction=reduction),
            gradient_matching_loss(pred, target, empty, reduction=reduction),
            DepthLoss(trim=0.1, reduction=reduction)(pred, target, empty),
            silog_loss(pred, target, empty, reduction=reduction),
        ):
            assert float(loss.detach()) == 0.0
            (g,) = torch.autograd.grad(loss, pred)
            assert torch.isfinite(g).all() and (g == 0).all()
    # One empty sample of two, per-image reduction: the mean is over the sample that has pixels.
    mask = torch.ones(2, 6, 6, dtype=torch.bool)
    mask[1] = False
    full = ssi_loss(pred[:1], target[:1], reduction="image")
    assert float(ssi_loss(pred, target, mask, reduction="image").detach()) == pytest.approx(
        float(full.detach()), rel=1e-6
    )


def test_feature_alignment_hand_computed():
    student = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]], requires_grad=True)
    teacher = torch.tensor([[[2.0, 0.0], [1.0, 0.0], [1.0, 0.0]]])
    # cos = 1 (ignored, above 0.85), 0, 0.7071 -> (1 + 1 - 0.7071) over all 3 tokens (V1: 1 - 1/HW sum cos).
    loss = feature_alignment_loss(student, teacher)
    assert float(loss.detach()) == pytest.approx((1 + 1 - math.sqrt(0.5)) / 3, abs=1e-6)
    loss.backward()
    assert torch.all(student.grad[0, 0] == 0) and student.grad[0, 1:].abs().sum() > 0
    # (B, C, h, w) maps are the same computation over C.
    maps_s = student.detach().permute(0, 2, 1).reshape(1, 2, 3, 1)
    maps_t = teacher.permute(0, 2, 1).reshape(1, 2, 3, 1)
    assert float(feature_alignment_loss(maps_s, maps_t)) == pytest.approx(float(loss.detach()), abs=1e-6)
    assert float(feature_alignment_loss(teacher, teacher)) == 0.0  # everything aligned: nothing to learn
    with pytest.raises(ValueError, match="same shape"):
        feature_alignment_loss(student, teacher[:, :2])


def test_silog_hand_computed_and_range():
    pred = torch.tensor([[[1.0, 1.0, 1.0, 1.0]]])
    target = torch.tensor([[[math.e, 1.0, 0.0005, 100.0]]])  # last two: below min_depth / above max_depth
    # g = (1, 0): mean g^2 = 0.5, mean g = 0.5 -> sqrt(0.5 - 0.5 * 0.25).
    assert float(silog_loss(pred, target, max_depth=80.0)) == pytest.approx(math.sqrt(0.375), rel=1e-6)
    # lambda = 1 makes it fully scale-invariant.
    d = _rand(2, 5, 5, seed=21) + 0.5
    p = _rand(2, 5, 5, seed=22) + 0.5
    assert float(silog_loss(3.0 * p, d, lambd=1.0)) == pytest.approx(float(silog_loss(p, d, lambd=1.0)), rel=1e-4)
    exact = d.clone().requires_grad_(True)
    zero = silog_loss(exact, d)
    (g,) = torch.autograd.grad(zero, exact)
    assert float(zero.detach()) == 0.0 and torch.isfinite(g).all()


def test_depth_loss_combines_and_regions():
    pred, target = _rand(2, 16, 16, seed=23), _rand(2, 16, 16, seed=24)
    terms = DepthLoss().compute(pred, target)
    t01 = normalize_minmax(target)
    assert float(terms["ssi"]) == pytest.approx(float(ssi_loss(pred, t01)), rel=1e-6)
    assert float(terms["gm"]) == pytest.approx(float(gradient_matching_loss(pred, t01)), rel=1e-6)
    assert float(terms["loss"]) == pytest.approx(float(terms["ssi"] + 2 * terms["gm"]), rel=1e-6)
    assert float(DepthLoss(gradient_weight=0)(pred, target)) == pytest.approx(float(terms["ssi"]), rel=1e-6)
    # CutMix-style regions: each part has its own affine label; aligned separately the fit is perfect.
    regions = torch.zeros(2, 16, 16, dtype=torch.bool)
    regions[:, 4:12, 2:9] = True
    mixed = torch.where(regions, 5.0 * pred + 3.0, 0.5 * pred - 1.0)
    crit = DepthLoss()
    assert float(crit(pred, mixed)) > 1e-3
    assert float(crit(pred, mixed, regions=regions)) < 1e-5
    with pytest.raises(ValueError, match="expected form"):
        DepthLossConfig(form="l2")
    with pytest.raises(ValueError, match="expected trim"):
        DepthLoss(trim=1.5)
    with pytest.raises(ValueError, match=r"expected target of shape \(2, 16, 16\)"):
        crit(pred, target[:, :8])
    with pytest.raises(ValueError, match="bool mask"):
        crit(pred, target, torch.ones(2, 16, 16))


@pytest.mark.parametrize("reduction", ["batch", "image"])
def test_shares_with_global_totals_add_up_to_the_whole_batch(reduction):
    # A batch with 0-60% holes split in two parts (two ranks, or two accumulation micro-batches): with the summed
    # totals, the parts' losses and gradients add up to the whole batch's; with their own denominators they don't.
    g = torch.Generator().manual_seed(3)
    pred = (torch.rand(4, 12, 14, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    target = torch.rand(4, 12, 14, generator=g, dtype=torch.float64) + 0.1
    mask = torch.rand(4, 12, 14, generator=g) > torch.tensor([0.0, 0.2, 0.4, 0.6])[:, None, None]
    regions = torch.rand(4, 12, 14, generator=g) > 0.5
    parts = (slice(0, 1), slice(1, 4))  # unequal valid counts per part
    crit = DepthLoss(trim=0.1, reduction=reduction)
    feat_s = torch.rand(4, 6, 8, generator=g, dtype=torch.float64, requires_grad=True)
    feat_t = torch.rand(4, 6, 8, generator=g, dtype=torch.float64)

    whole = [crit(pred, target, mask, regions), silog_loss(pred, target, mask, reduction=reduction)]
    totals = sum(crit.totals(target[s], mask[s], regions[s]) for s in parts)
    stotals = sum(silog_totals(pred[s], target[s], mask[s], reduction=reduction) for s in parts)
    assert torch.equal(totals, crit.totals(target, mask, regions))
    shares = [
        (
            crit.compute(pred[s], target[s], mask[s], regions[s], totals)["loss"],
            silog_loss(pred[s], target[s], mask[s], reduction=reduction, totals=stotals),
        )
        for s in parts
    ]
    for k in range(2):
        grad_whole = torch.autograd.grad(whole[k], pred, retain_graph=True)[0]
        share_sum = shares[0][k] + shares[1][k]
        grad_shares = torch.autograd.grad(share_sum, pred, retain_graph=True)[0]
        assert float(share_sum.detach()) == pytest.approx(float(whole[k].detach()), rel=1e-10)
        torch.testing.assert_close(grad_shares, grad_whole, rtol=1e-9, atol=1e-12)
    # Each part on its own (today's per-rank normalisation) is a different optimisation.
    local = crit(pred[:1], target[:1], mask[:1], regions[:1]) + crit(pred[1:], target[1:], mask[1:], regions[1:])
    assert abs(float(local.detach()) / 2 - float(whole[0].detach())) > 1e-3 * float(whole[0].detach())
    # The feature loss divides by all tokens: the shares add up too.
    f_whole = feature_alignment_loss(feat_s, feat_t, threshold=0.9)
    f_shares = sum(feature_alignment_loss(feat_s[s], feat_t[s], threshold=0.9, total=4 * 6) for s in parts)
    assert float(f_shares) == pytest.approx(float(f_whole), rel=1e-12)
