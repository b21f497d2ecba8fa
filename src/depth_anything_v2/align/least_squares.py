"""Masked least-squares alignment of a prediction to a target, batched and differentiable.

Relative depth models predict affine-invariant disparity: the numbers are right up to an unknown scale
and shift. Both the evaluation protocol (fit the prediction to the ground truth before scoring) and the
training losses (the scale-and-shift-invariant loss fits the prediction to the target per image) need
the same fit, so it lives here, in pure torch, with gradients flowing through the fitted scale and
shift.

Shapes: ``pred``, ``target`` and ``mask`` share one shape, either ``(H, W)`` (one image; the results are
0-d tensors) or ``(B, H, W)`` (a batch; results have shape ``(B,)``). More generally an input of ``ndim
>= 3`` is ``(B, ...)`` and everything after the batch dimension is reduced.

Validity: a pixel takes part in a fit when ``mask`` is true there (or its weight is positive, for a
float mask of per-pixel weights) *and* both ``pred`` and ``target`` are finite there. Values at invalid
pixels are never read into the sums (they are replaced before any arithmetic), so an ``inf`` or ``NaN``
in the ground truth at an invalid pixel does not poison the result or its gradient.

Accuracy: sums are taken in float64 around the (weighted) means, so fitting float32 maps with millions
of pixels and large offsets (e.g. disparity ~1000 +- 1) is exact to float32 precision. The outputs are
returned in the promoted floating dtype of ``pred`` and ``target``, but never below float32 (a scale
fitted to fp16/bf16 inputs can exceed their range).

Degenerate cases (documented behaviour, never ``NaN``):

* ``fit_scale_shift``: fewer than 2 valid pixels, or a prediction that is constant over the valid pixels
  (variance <= 1e-24 x its mean square, i.e. only float64 rounding noise), gives ``scale = 0`` and
  ``shift = mean of the valid target`` (``0`` when there is no valid pixel): still a least-squares
  solution, the aligned prediction being the best constant.
* ``fit_scale``: no valid pixel, or a prediction that is zero on all valid pixels, gives ``scale = 0``.
* ``median_scale``: no valid pixel, or a median prediction of zero, gives ``scale = 0``.

Example::

    >>> import torch
    >>> from depth_anything_v2.align.least_squares import fit_scale_shift
    >>> pred = torch.rand(2, 4, 5)
    >>> target = 3.0 * pred + 0.5
    >>> scale, shift = fit_scale_shift(pred, target)
    >>> torch.allclose(scale, torch.tensor([3.0, 3.0])), torch.allclose(shift, torch.tensor([0.5, 0.5]))
    (True, True)
"""

from __future__ import annotations

import torch

__all__ = ["fit_scale", "fit_scale_shift", "median_scale"]

# A prediction whose variance over the valid pixels is below this fraction of its mean square is "constant":
# float64 rounding of a truly constant map leaves a relative variance near 1e-30, far below this, while any
# real variation of a float32 map (relative step >= 1e-7) is far above it.
_CONSTANT_RELATIVE_VARIANCE = 1e-24


def _prepare(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, name: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, bool, torch.dtype]:
    """Validate, flatten to (B, N), and return float64 pred/target zeroed where invalid plus float64 weights.

    Returns ``(pred64, target64, weight64, valid_bool, unbatched, out_dtype)``.
    """
    for arg, value in (("pred", pred), ("target", target)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name}: expected {arg} to be a torch.Tensor, got {type(value).__name__}")
    if pred.shape != target.shape:
        raise ValueError(
            f"{name}: expected pred and target of the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if pred.ndim < 2:
        raise ValueError(f"{name}: expected (H, W) or (B, H, W) tensors, got shape {tuple(pred.shape)}")
    if mask is not None:
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"{name}: expected mask to be a torch.Tensor or None, got {type(mask).__name__}")
        if mask.shape != pred.shape:
            raise ValueError(
                f"{name}: expected mask of shape {tuple(pred.shape)} (same as pred), got {tuple(mask.shape)}"
            )
    out_dtype = torch.promote_types(pred.dtype, target.dtype)
    if not out_dtype.is_floating_point or torch.finfo(out_dtype).bits < 32:
        out_dtype = torch.float32

    unbatched = pred.ndim == 2
    if unbatched:
        pred, target = pred.unsqueeze(0), target.unsqueeze(0)
        mask = mask.unsqueeze(0) if mask is not None else None
    batch = pred.shape[0]
    p = pred.reshape(batch, -1).to(torch.float64)
    t = target.reshape(batch, -1).to(torch.float64)

    valid = torch.isfinite(p) & torch.isfinite(t)
    if mask is None:
        weight = valid.to(torch.float64)
    else:
        m = mask.reshape(batch, -1)
        if m.dtype == torch.bool:
            weight = (m & valid).to(torch.float64)
        else:
            m64 = m.to(torch.float64)
            m64 = torch.where(torch.isfinite(m64), m64, torch.zeros_like(m64))
            valid = valid & (m64 > 0)
            weight = torch.where(valid, m64, torch.zeros_like(m64))
    valid = weight > 0
    zero = torch.zeros((), dtype=torch.float64, device=p.device)
    # torch.where (not multiplication) so that inf/NaN at invalid pixels never reach the sums or gradients.
    p = torch.where(valid, p, zero)
    t = torch.where(valid, t, zero)
    return p, t, weight, valid, unbatched, out_dtype


def _finish(x: torch.Tensor, unbatched: bool, dtype: torch.dtype) -> torch.Tensor:
    x = x.to(dtype)
    return x[0] if unbatched else x


def fit_scale_shift(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares ``scale``, ``shift`` minimising ``sum_valid w * (scale * pred + shift - target) ** 2``.

    Args:
        pred: ``(H, W)`` or ``(B, H, W)`` prediction (any real units, e.g. disparity).
        target: the same shape, the values to match.
        mask: optional, same shape: bool validity, or non-negative float per-pixel weights.

    Returns:
        ``(scale, shift)``: 0-d tensors for ``(H, W)`` inputs, ``(B,)`` for batches; differentiable with
        respect to ``pred`` and ``target``. Degenerate samples (fewer than 2 valid pixels, constant
        prediction) get ``scale = 0`` and ``shift = mean valid target`` (0 without valid pixels), never
        ``NaN``.
    """
    p, t, w, valid, unbatched, out_dtype = _prepare(pred, target, mask, "fit_scale_shift")
    count = valid.sum(dim=1)
    wsum = w.sum(dim=1)
    wsum_safe = torch.where(wsum > 0, wsum, torch.ones_like(wsum))
    mean_p = (w * p).sum(dim=1) / wsum_safe
    mean_t = (w * t).sum(dim=1) / wsum_safe
    zero = torch.zeros((), dtype=torch.float64, device=p.device)
    # Centre only the valid pixels; invalid ones have weight 0 but keep them at exactly 0 for safety.
    pc = torch.where(valid, p - mean_p[:, None], zero)
    tc = torch.where(valid, t - mean_t[:, None], zero)
    var_p = (w * pc * pc).sum(dim=1)
    cov = (w * pc * tc).sum(dim=1)
    mean_sq_p = (w * p * p).sum(dim=1)
    degenerate = (count < 2) | (var_p <= _CONSTANT_RELATIVE_VARIANCE * mean_sq_p)
    var_safe = torch.where(degenerate, torch.ones_like(var_p), var_p)
    scale = torch.where(degenerate, torch.zeros_like(cov), cov / var_safe)
    shift = mean_t - scale * mean_p
    return _finish(scale, unbatched, out_dtype), _finish(shift, unbatched, out_dtype)


def fit_scale(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Least-squares ``scale`` minimising ``sum_valid w * (scale * pred - target) ** 2`` (no shift).

    Shapes and masks as in :func:`fit_scale_shift`. Returns a 0-d tensor for ``(H, W)`` inputs, ``(B,)`` for
    batches. A sample with no valid pixel or an all-zero prediction gets ``scale = 0``.
    """
    p, t, w, _valid, unbatched, out_dtype = _prepare(pred, target, mask, "fit_scale")
    num = (w * p * t).sum(dim=1)
    den = (w * p * p).sum(dim=1)
    degenerate = den <= 0
    den_safe = torch.where(degenerate, torch.ones_like(den), den)
    scale = torch.where(degenerate, torch.zeros_like(num), num / den_safe)
    return _finish(scale, unbatched, out_dtype)


def _masked_median(x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row median of the valid entries of ``x`` (B, N) (mean of the two middle values for even counts,
    as ``numpy.median``). Returns ``(median, count)``; rows without valid entries give median 0.

    Sorting instead of ``torch.quantile``: quantile refuses inputs above 2**24 elements, and ETH3D ground
    truth has 6048 x 4032 = 24.4M pixels.
    """
    inf = torch.tensor(float("inf"), dtype=x.dtype, device=x.device)
    ordered, _ = torch.sort(torch.where(valid, x, inf), dim=1)
    count = valid.sum(dim=1)
    lo = ((count - 1).clamp(min=0) // 2)[:, None]
    hi = (count // 2).clamp(max=x.shape[1] - 1)[:, None]
    hi = torch.where(count[:, None] > 0, hi, lo)
    med = 0.5 * (ordered.gather(1, lo) + ordered.gather(1, hi))[:, 0]
    med = torch.where(count > 0, med, torch.zeros_like(med))
    return med, count


def median_scale(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Median scaling: ``scale = median(target) / median(pred)`` over the valid pixels (Eigen et al.).

    Shapes and masks as in :func:`fit_scale_shift` (a float mask counts as valid where it is positive; the
    weights themselves are not used). Medians follow ``numpy.median`` (the mean of the two middle values for
    an even count). A sample with no valid pixel or a zero median prediction gets ``scale = 0``.
    """
    p, t, _w, valid, unbatched, out_dtype = _prepare(pred, target, mask, "median_scale")
    med_p, count = _masked_median(p, valid)
    med_t, _ = _masked_median(t, valid)
    degenerate = (count == 0) | (med_p == 0)
    med_p_safe = torch.where(degenerate, torch.ones_like(med_p), med_p)
    scale = torch.where(degenerate, torch.zeros_like(med_t), med_t / med_p_safe)
    return _finish(scale, unbatched, out_dtype)
