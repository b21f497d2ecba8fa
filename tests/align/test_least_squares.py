import numpy as np
import pytest
import torch

from depth_anything_v2.align.least_squares import fit_scale, fit_scale_shift, median_scale


def _rand(*shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=torch.float64).to(dtype)


def test_fit_scale_shift_recovers_known_affine_batched():
    pred = _rand(3, 7, 9)
    scales = torch.tensor([2.5, -0.75, 1e3], dtype=torch.float64)
    shifts = torch.tensor([0.125, 4.0, -300.0], dtype=torch.float64)
    target = scales[:, None, None] * pred.double() + shifts[:, None, None]
    scale, shift = fit_scale_shift(pred, target.float())
    assert scale.shape == (3,) and shift.shape == (3,)
    assert scale.dtype == torch.float32
    torch.testing.assert_close(scale.double(), scales, rtol=1e-6, atol=0)
    torch.testing.assert_close(shift.double(), shifts, rtol=1e-5, atol=1e-4)
    # float64 in, float64 out, exact to float64 precision.
    s64, t64 = fit_scale_shift(pred.double(), target)
    assert s64.dtype == torch.float64
    torch.testing.assert_close(s64, scales, rtol=1e-12, atol=0)
    torch.testing.assert_close(t64, shifts, rtol=1e-12, atol=1e-10)


def test_fit_scale_shift_unbatched_gives_0d():
    pred = _rand(5, 6, dtype=torch.float64)
    scale, shift = fit_scale_shift(pred, 2 * pred - 1)
    assert scale.shape == () and shift.shape == ()
    assert scale.item() == pytest.approx(2.0, abs=1e-12)
    assert shift.item() == pytest.approx(-1.0, abs=1e-12)


def test_fit_scale_shift_matches_numpy_lstsq_with_mask_and_ignores_garbage():
    pred = _rand(2, 16, 16, seed=1)
    target = _rand(2, 16, 16, seed=2) * 5
    mask = _rand(2, 16, 16, seed=3) > 0.4
    # Garbage at invalid pixels must not matter.
    target_dirty = target.clone()
    target_dirty[~mask] = float("inf")
    target_dirty[0, 0, 0] = float("nan") if not mask[0, 0, 0] else target_dirty[0, 0, 0]
    scale, shift = fit_scale_shift(pred, target_dirty, mask)
    for b in range(2):
        m = mask[b].numpy()
        a = np.stack([pred[b].numpy()[m], np.ones(m.sum())], axis=1).astype(np.float64)
        sol = np.linalg.lstsq(a, target[b].numpy()[m].astype(np.float64), rcond=None)[0]
        assert scale[b].item() == pytest.approx(sol[0], rel=1e-5)
        assert shift[b].item() == pytest.approx(sol[1], rel=1e-5, abs=1e-6)


def test_fit_scale_shift_float_mask_is_weights():
    pred = torch.tensor([[0.0, 1.0, 2.0, 3.0]], dtype=torch.float64).reshape(1, 2, 2)
    target = torch.tensor([[0.0, 1.0, 2.0, 10.0]], dtype=torch.float64).reshape(1, 2, 2)
    weights = torch.tensor([[1.0, 1.0, 1.0, 0.0]], dtype=torch.float64).reshape(1, 2, 2)
    scale, shift = fit_scale_shift(pred, target, weights)
    assert scale.item() == pytest.approx(1.0) and shift.item() == pytest.approx(0.0, abs=1e-12)
    # Weight 2 on one point == that point twice: hand-computed weighted LS.
    w = torch.tensor([1.0, 1.0, 2.0, 0.0], dtype=torch.float64).reshape(1, 2, 2)
    target2 = torch.tensor([0.0, 2.0, 1.0, 0.0], dtype=torch.float64).reshape(1, 2, 2)
    s, t = fit_scale_shift(pred, target2, w)
    x = np.array([0.0, 1.0, 2.0, 2.0])
    y = np.array([0.0, 2.0, 1.0, 1.0])
    ref = np.polyfit(x, y, 1)
    assert s.item() == pytest.approx(ref[0]) and t.item() == pytest.approx(ref[1])


def test_fit_scale_shift_large_offset_is_accurate():
    # Disparity-like values with a big offset: naive float32 normal equations lose everything here.
    pred = 1000.0 + _rand(1, 200, 300, seed=4, dtype=torch.float32)
    target = 0.5 * pred.double() - 400.0
    scale, shift = fit_scale_shift(pred, target.float())
    assert scale.item() == pytest.approx(0.5, rel=2e-4)
    assert shift.item() == pytest.approx(-400.0, rel=2e-4)
    aligned = scale * pred + shift
    assert (aligned.double() - target).abs().max().item() < 2e-3


@pytest.mark.parametrize("count", [0, 1])
def test_fit_scale_shift_too_few_pixels(count):
    pred = _rand(1, 4, 4)
    target = _rand(1, 4, 4, seed=9) + 2
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask.view(-1)[:count] = True
    scale, shift = fit_scale_shift(pred, target, mask)
    assert scale.item() == 0.0
    expected = target.view(-1)[0].item() if count else 0.0
    assert shift.item() == pytest.approx(expected)


def test_fit_scale_shift_constant_prediction_gives_mean_target_without_nan():
    pred = torch.full((2, 3, 3), 0.1, dtype=torch.float32, requires_grad=True)
    target = torch.arange(18, dtype=torch.float32).reshape(2, 3, 3)
    scale, shift = fit_scale_shift(pred, target)
    torch.testing.assert_close(scale, torch.zeros(2))
    torch.testing.assert_close(shift, torch.tensor([4.0, 13.0]))
    (scale.sum() + shift.sum()).backward()
    assert torch.isfinite(pred.grad).all()


def test_fit_scale_shift_batch_mixes_degenerate_and_regular():
    pred = torch.stack([torch.zeros(4, 4), _rand(4, 4, seed=5)])
    target = 3 * pred + 1
    scale, shift = fit_scale_shift(pred, target)
    torch.testing.assert_close(scale, torch.tensor([0.0, 3.0]))
    torch.testing.assert_close(shift, torch.tensor([1.0, 1.0]))


def test_fit_scale_shift_is_differentiable_and_gradcheck():
    pred = _rand(2, 3, 4, seed=6, dtype=torch.float64).requires_grad_(True)
    target = _rand(2, 3, 4, seed=7, dtype=torch.float64).requires_grad_(True)
    mask = _rand(2, 3, 4, seed=8) > 0.3
    assert torch.autograd.gradcheck(lambda p, t: fit_scale_shift(p, t, mask), (pred, target))
    assert torch.autograd.gradcheck(lambda p, t: fit_scale(p, t, mask), (pred, target))
    assert torch.autograd.gradcheck(lambda p, t: median_scale(p, t, mask), (pred, target))


def test_gradient_is_finite_with_inf_at_invalid_pixels():
    pred = _rand(1, 4, 4, seed=10).requires_grad_(True)
    target = _rand(1, 4, 4, seed=11) + 1
    target[0, 0, :] = float("inf")
    mask = torch.isfinite(target)
    scale, shift = fit_scale_shift(pred, target, mask)
    loss = ((scale[:, None, None] * pred + shift[:, None, None] - target)[mask] ** 2).mean()
    loss.backward()
    assert torch.isfinite(pred.grad).all()


def test_half_precision_inputs_give_float32_outputs():
    pred = _rand(1, 8, 8, seed=12, dtype=torch.float16)
    scale, shift = fit_scale_shift(pred, pred * 2 + 1)
    assert scale.dtype == torch.float32 and shift.dtype == torch.float32
    assert scale.item() == pytest.approx(2.0, rel=1e-3)


def test_fit_scale_known_and_degenerate():
    pred = _rand(2, 5, 5, seed=13)
    scale = fit_scale(pred, 4.0 * pred)
    torch.testing.assert_close(scale, torch.tensor([4.0, 4.0]))
    # Hand-computed: sum(p t) / sum(p^2) = (1*1 + 2*3) / (1 + 4) = 7/5.
    p = torch.tensor([[1.0, 2.0]])
    t = torch.tensor([[1.0, 3.0]])
    assert fit_scale(p, t).item() == pytest.approx(1.4)
    assert fit_scale(torch.zeros(3, 3), torch.ones(3, 3)).item() == 0.0
    assert fit_scale(p, t, torch.zeros(1, 2, dtype=torch.bool)).item() == 0.0


def test_median_scale_matches_numpy_median_even_and_odd():
    pred = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # median 2.5
    target = torch.tensor([[10.0, 20.0, 30.0, 100.0]])  # median 25
    assert median_scale(pred, target).item() == pytest.approx(10.0)
    mask = torch.tensor([[True, True, True, False]])  # medians 2 and 20
    assert median_scale(pred, target, mask).item() == pytest.approx(10.0)
    g = _rand(3, 11, 13, seed=14) + 0.1
    t = _rand(3, 11, 13, seed=15) * 7
    m = _rand(3, 11, 13, seed=16) > 0.5
    got = median_scale(g, t, m)
    for b in range(3):
        ref = np.median(t[b].numpy()[m[b].numpy()]) / np.median(g[b].numpy()[m[b].numpy()])
        assert got[b].item() == pytest.approx(ref, rel=1e-6)


def test_median_scale_degenerate():
    assert median_scale(torch.zeros(2, 2), torch.ones(2, 2)).item() == 0.0
    none = torch.zeros(2, 2, dtype=torch.bool)
    assert median_scale(torch.ones(2, 2), torch.ones(2, 2), none).item() == 0.0


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"same shape, got \(2, 3\) and \(3, 2\)"):
        fit_scale_shift(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="expected mask of shape"):
        fit_scale(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"expected \(H, W\) or \(B, H, W\)"):
        median_scale(torch.zeros(3), torch.zeros(3))
    with pytest.raises(TypeError, match=r"torch\.Tensor, got ndarray"):
        fit_scale_shift(np.zeros((2, 2)), torch.zeros(2, 2))
