"""Training losses of Depth Anything V2 (REFERENCE section 4), batched and masked, in pure torch.

Relative depth (teacher and students) is trained in *disparity* space (affine-invariant inverse depth) with

    L = L_ssi + 2 * L_gm

where ``L_ssi`` is the scale-and-shift-invariant loss (the prediction is aligned to the target per sample by
least squares, then the residual is scored) and ``L_gm`` the multi-scale gradient-matching loss of the aligned
residual. The authors said both were adapted from the MiDaS reference loss
(https://gist.github.com/dvdhfnr/732c26b61a0e63a0abc8a5d769dbebd0, DepthAnything/Depth-Anything-V2#137); this
module follows that code's conventions, which the paper does not spell out:

* the squared-error form is ``sum(mask * r**2) / (2 * sum(mask))`` (MiDaS halves it);
* the gradient term at scale ``k`` (stride ``2**k``, 4 scales) sums ``|dR/dx| + |dR/dy|`` over the pairs of
  horizontally / vertically adjacent *valid* pixels and divides by the number of valid pixels at that scale;
  the 4 scales are summed;
* ``reduction="batch"`` (MiDaS' default) divides the summed loss of the whole batch by the batch's number of
  valid pixels; ``reduction="image"`` averages per-sample means over the samples that have a valid pixel.

On pseudo-labelled images the paper ignores, in each sample, the 10% of valid pixels with the largest
per-pixel loss (``trim=0.1``: the threshold is the sample's 90th percentile of the per-pixel loss over its
valid pixels, linear interpolation as ``torch.quantile``; pixels *above* it are dropped, so with ``n`` distinct
values ``n - floor(0.9 * (n - 1)) - 1`` pixels go, e.g. exactly 10 of 100). The trimmed pixels are removed from
the gradient term too (they are the unreliable labels), but still count in the denominators: MiDaS' trimmed loss
is ``1 / 2M * sum`` over the kept ``U_m`` pixels with ``M`` the valid count (MiDaS paper, eq. 7).

**Global normalisation.** Every denominator (valid pixels per term; samples for ``"image"``; tokens for the
feature loss; ``n`` and the sums of SiLog) is a property of the *global* batch of an optimiser step. A trainer
sums :meth:`DepthLoss.totals` (labels only, known before the forward pass) / :func:`silog_totals` over ranks and
accumulation micro-batches and passes the sum as ``totals``; each part then contributes its exact share, so 1
process, N processes and N accumulation steps optimise the same loss (equal within float rounding).

Other losses: the median / mean-absolute-deviation normalised MAE of Depth Anything V1 and MiDaS v3
(``form="median_mad"``), V1's feature-alignment loss against a frozen encoder (``1 - cos`` over the tokens below
the margin, divided by *all* tokens as V1's ``1 - 1/HW sum cos``), and SiLog for metric depth
(the reference metric trainer's formula, pooled over the batch).

Shapes: predictions, targets and masks are ``(B, H, W)``; ``mask`` is bool (``None`` = every finite pixel).
Pixels where the prediction or the target is not finite never take part, so ``inf``/``NaN`` at invalid pixels
are harmless. A batch without any valid pixel gives a loss of exactly 0 (connected to the graph, so
``backward()`` works and yields zero gradients), never ``NaN``.

Example::

    >>> import torch
    >>> from depth_anything_v2.training.losses import DepthLoss, ssi_loss
    >>> target = torch.rand(2, 8, 8)
    >>> float(ssi_loss(3.0 * target + 1.0, target)) < 1e-10   # the prediction's scale and shift are free
    True
    >>> criterion = DepthLoss()                                # L_ssi + 2 * L_gm, as the paper
    >>> loss = criterion(torch.rand(2, 8, 8, requires_grad=True), target)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..align.least_squares import fit_scale_shift

__all__ = [
    "DepthLoss",
    "DepthLossConfig",
    "SSIForm",
    "align_prediction",
    "feature_alignment_loss",
    "gradient_matching_loss",
    "masked_quantile",
    "normalize_median_mad",
    "normalize_minmax",
    "silog_loss",
    "silog_totals",
    "ssi_loss",
    "ssi_residual",
    "trim_mask",
]

SSIForm = Literal["mse", "mae", "median_mad"]
Reduction = Literal["batch", "image"]
_FORMS = ("mse", "mae", "median_mad")
_REDUCTIONS = ("batch", "image")


# ----------------------------------------------------------------------------------------------- helpers
def _check_inputs(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, name: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate ``(B, H, W)`` inputs; return pred and target with non-finite entries zeroed, and the bool mask
    of usable pixels (given mask & both finite)."""
    for arg, value in (("pred", pred), ("target", target)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name}: expected {arg} to be a torch.Tensor, got {type(value).__name__}")
    if pred.ndim != 3:
        raise ValueError(f"{name}: expected pred of shape (B, H, W), got {tuple(pred.shape)}")
    if target.shape != pred.shape:
        raise ValueError(
            f"{name}: expected target of shape {tuple(pred.shape)} (same as pred), got {tuple(target.shape)}"
        )
    # Losses are computed in at least float32: under fp16/bf16 autocast the squared residuals and the
    # least-squares fit would lose most of their precision.
    if pred.dtype in (torch.float16, torch.bfloat16):
        pred = pred.float()
    if target.dtype in (torch.float16, torch.bfloat16) or not target.is_floating_point():
        target = target.float()
    valid = torch.isfinite(pred.detach()) & torch.isfinite(target.detach())
    if mask is not None:
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"{name}: expected mask to be a bool torch.Tensor or None, got {type(mask).__name__}")
        if mask.shape != pred.shape:
            raise ValueError(
                f"{name}: expected mask of shape {tuple(pred.shape)} (same as pred), got {tuple(mask.shape)}"
            )
        if mask.dtype != torch.bool:
            raise ValueError(f"{name}: expected a bool mask, got dtype {mask.dtype}")
        valid = valid & mask
    zero = torch.zeros((), dtype=pred.dtype, device=pred.device)
    # torch.where (not multiplication) so inf/NaN at invalid pixels never reach values or gradients.
    pred = torch.where(valid, pred, zero)
    target = torch.where(valid, target, torch.zeros((), dtype=target.dtype, device=target.device))
    return pred, target, valid


def _reduce(
    per_sample_sum: torch.Tensor,
    per_sample_count: torch.Tensor,
    reduction: str,
    total: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reduce per-sample loss sums ``(B,)`` with their pixel counts ``(B,)``; 0 (not NaN) without pixels.

    ``total`` replaces the batch's own denominator (``"batch"``: its pixel count; ``"image"``: its number of
    samples with a pixel) by a global one: the sum over every rank and accumulation micro-batch of one optimiser
    step, so that the step optimises the loss of the global batch (see :meth:`DepthLoss.totals`).
    """
    if reduction == "batch":
        denom = per_sample_count.sum() if total is None else total
        return per_sample_sum.sum() / denom.clamp(min=1).to(per_sample_sum.dtype)
    if reduction == "image":
        has = per_sample_count > 0
        means = per_sample_sum / per_sample_count.clamp(min=1).to(per_sample_sum.dtype)
        denom = has.sum() if total is None else total
        return (means * has).sum() / denom.clamp(min=1).to(per_sample_sum.dtype)
    raise ValueError(f"expected reduction in {_REDUCTIONS}, got {reduction!r}")


def _denominators(valid: torch.Tensor, scales: int, reduction: str) -> torch.Tensor:
    """``(1 + scales,)`` float64: the denominators of the SSI term and of each gradient scale for ``valid``."""
    counts = [valid.sum(dim=(1, 2))] + [valid[:, :: 2**k, :: 2**k].sum(dim=(1, 2)) for k in range(scales)]
    if reduction == "image":
        return torch.stack([(c > 0).sum() for c in counts]).double()
    return torch.stack([c.sum() for c in counts]).double()


def _sorted_valid(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``x`` (B, N) sorted ascending with invalid entries pushed to the end; and the valid counts."""
    inf = torch.tensor(float("inf"), dtype=x.dtype, device=x.device)
    ordered, _ = torch.sort(torch.where(mask, x, inf), dim=1)
    return ordered, mask.sum(dim=1)


def masked_quantile(x: torch.Tensor, mask: torch.Tensor, q: float) -> torch.Tensor:
    """Per-sample ``q``-quantile of ``x`` over ``mask`` (linear interpolation, as ``torch.quantile``).

    ``x`` and ``mask`` are ``(B, ...)``; returns ``(B,)``; a sample without valid entries gives 0. Sorting
    instead of ``torch.quantile``, which refuses inputs above 2**24 elements (64 crops of 518 x 518 exceed it).
    Differentiable like ``torch.quantile`` (through the two order statistics it interpolates).
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"expected a quantile q in [0, 1], got {q}")
    batch = x.shape[0]
    ordered, count = _sorted_valid(x.reshape(batch, -1), mask.reshape(batch, -1))
    pos = (count - 1).clamp(min=0).to(torch.float64) * q
    lo = pos.floor().long()
    hi = pos.ceil().long()
    frac = (pos - lo.to(torch.float64)).to(x.dtype)
    v_lo = ordered.gather(1, lo[:, None])[:, 0]
    v_hi = ordered.gather(1, hi[:, None])[:, 0]
    has = count > 0
    # Rows without valid entries hold inf; replace before arithmetic so no inf - inf appears.
    v_lo = torch.where(has, v_lo, torch.zeros_like(v_lo))
    v_hi = torch.where(has, v_hi, torch.zeros_like(v_hi))
    return v_lo + frac * (v_hi - v_lo)


def _masked_median(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample median over ``mask`` (mean of the two middle values for even counts); 0 when empty."""
    return masked_quantile(x, mask, 0.5)


# ------------------------------------------------------------------------------------------ normalising
def normalize_minmax(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Map each sample of ``x`` (B, H, W) affinely to [0, 1] over its valid pixels (V1: targets "normalised to
    0~1 on each depth map"). Constant or empty samples map to 0. Invalid pixels are set to 0."""
    valid = torch.isfinite(x) if mask is None else (mask & torch.isfinite(x))
    inf = torch.tensor(float("inf"), dtype=x.dtype, device=x.device)
    lo = torch.where(valid, x, inf).amin(dim=(1, 2), keepdim=True)
    hi = torch.where(valid, x, -inf).amax(dim=(1, 2), keepdim=True)
    span = hi - lo
    ok = torch.isfinite(span) & (span > 0)
    lo = torch.where(ok, lo, torch.zeros_like(lo))
    span = torch.where(ok, span, torch.ones_like(span))
    out = (torch.where(valid, x, lo) - lo) / span
    return torch.where(valid & ok, out, torch.zeros_like(out))


def normalize_median_mad(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """V1 / MiDaS v3 robust normalisation per sample: ``(x - median) / mean(|x - median|)`` over ``mask``.

    The deviation is clamped at 1e-6 (as MiDaS) so a constant sample maps to 0, not NaN. Returns (B, H, W),
    0 at invalid pixels.
    """
    med = _masked_median(x, mask)[:, None, None]
    centred = torch.where(mask, x - med, torch.zeros_like(x))
    count = mask.sum(dim=(1, 2)).clamp(min=1).to(x.dtype)
    mad = (centred.abs().sum(dim=(1, 2)) / count).clamp(min=1e-6)[:, None, None]
    return centred / mad


# ---------------------------------------------------------------------------------------- alignment
def align_prediction(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``scale * pred + shift`` with the per-sample least-squares ``scale``, ``shift`` fitted over ``mask``.

    (B, H, W) in and out; differentiable through the fit (``depth_anything_v2.align.least_squares.fit_scale_shift``).
    """
    pred_c, target_c, valid = _check_inputs(pred, target, mask, "align_prediction")
    scale, shift = fit_scale_shift(pred_c, target_c, valid)
    return scale.to(pred_c.dtype)[:, None, None] * pred.to(pred_c.dtype) + shift.to(pred_c.dtype)[:, None, None]


def ssi_residual(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, *, form: SSIForm = "mse"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The aligned residual and the validity mask the SSI and gradient losses are computed on.

    ``form="mse"``/``"mae"``: residual = least-squares-aligned prediction - target. ``form="median_mad"``:
    residual = median/MAD-normalised prediction - normalised target. Returns ``(residual, valid)``, both
    (B, H, W); the residual is 0 at invalid pixels.
    """
    if form not in _FORMS:
        raise ValueError(f"expected form in {_FORMS}, got {form!r}")
    pred_c, target_c, valid = _check_inputs(pred, target, mask, "ssi_residual")
    if form == "median_mad":
        residual = normalize_median_mad(pred_c, valid) - normalize_median_mad(target_c, valid)
    else:
        scale, shift = fit_scale_shift(pred_c, target_c, valid)
        aligned = scale.to(pred_c.dtype)[:, None, None] * pred_c + shift.to(pred_c.dtype)[:, None, None]
        residual = aligned - target_c
    return torch.where(valid, residual, torch.zeros_like(residual)), valid


def _pixel_loss(residual: torch.Tensor, form: str) -> torch.Tensor:
    return residual * residual if form == "mse" else residual.abs()


def trim_mask(pixel_loss: torch.Tensor, mask: torch.Tensor, trim: float) -> torch.Tensor:
    """``mask`` minus each sample's pixels whose loss exceeds its ``(1 - trim)``-quantile over ``mask``.

    ``trim=0.1`` is the paper's "ignore the top 10% largest-loss pixels of each pseudo-labelled sample". The
    threshold is not differentiated (it selects pixels). ``trim=0`` returns ``mask`` unchanged.
    """
    if not 0.0 <= trim < 1.0:
        raise ValueError(f"expected trim in [0, 1), got {trim}")
    if trim == 0.0:
        return mask
    loss = pixel_loss.detach()
    threshold = masked_quantile(loss, mask, 1.0 - trim)
    return mask & (loss <= threshold.view(-1, *([1] * (loss.ndim - 1))))


# -------------------------------------------------------------------------------------------- losses
def _ssi_from_residual(
    residual: torch.Tensor,
    kept: torch.Tensor,
    valid: torch.Tensor,
    form: str,
    reduction: str,
    total: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sum of the per-pixel loss over ``kept`` pixels, divided by the number of ``valid`` ones (MiDaS' trimmed
    loss ``1 / 2M * sum over the kept U_m pixels``: the denominator counts the trimmed pixels too)."""
    pixel = _pixel_loss(residual, form)
    sums = torch.where(kept, pixel, torch.zeros_like(pixel)).sum(dim=(1, 2))
    counts = valid.sum(dim=(1, 2))
    # MiDaS halves the squared error: sum(r^2) / (2 M).
    if form == "mse":
        sums = sums / 2
    return _reduce(sums, counts, reduction, total)


def ssi_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    form: SSIForm = "mse",
    trim: float = 0.0,
    reduction: Reduction = "batch",
) -> torch.Tensor:
    """Scale-and-shift-invariant loss of a disparity prediction against a disparity target.

    Args:
        pred, target: (B, H, W) disparity (any affine scale: the prediction is aligned per sample).
        mask: (B, H, W) bool of valid target pixels, or ``None`` (all finite pixels).
        form: ``"mse"`` (MiDaS: least-squares alignment, ``sum r**2 / 2M``), ``"mae"`` (least-squares
            alignment, mean ``|r|``), or ``"median_mad"`` (V1: both normalised by median and mean absolute
            deviation, mean ``|r|``).
        trim: fraction of each sample's valid pixels with the largest loss to ignore (0.1 for pseudo labels).
        reduction: ``"batch"`` (sum over the batch / number of valid pixels) or ``"image"`` (mean of
            per-sample means).

    Returns:
        A scalar tensor; 0 when no pixel is valid.
    """
    residual, valid = ssi_residual(pred, target, mask, form=form)
    kept = trim_mask(_pixel_loss(residual, form), valid, trim)
    return _ssi_from_residual(residual, kept, valid, form, reduction)


def _gradient_from_residual(
    residual: torch.Tensor,
    kept: torch.Tensor,
    valid: torch.Tensor,
    scales: int,
    reduction: str,
    totals: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pairs of adjacent ``kept`` pixels, divided per scale by the number of ``valid`` pixels at that scale."""
    total = residual.new_zeros(())
    for k in range(scales):
        step = 2**k
        r = residual[:, ::step, ::step]
        m = kept[:, ::step, ::step]
        r = torch.where(m, r, torch.zeros_like(r))
        mx = m[:, :, 1:] & m[:, :, :-1]  # valid only where both neighbours are valid
        my = m[:, 1:, :] & m[:, :-1, :]
        gx = torch.where(mx, (r[:, :, 1:] - r[:, :, :-1]).abs(), torch.zeros((), dtype=r.dtype, device=r.device))
        gy = torch.where(my, (r[:, 1:, :] - r[:, :-1, :]).abs(), torch.zeros((), dtype=r.dtype, device=r.device))
        sums = gx.sum(dim=(1, 2)) + gy.sum(dim=(1, 2))
        counts = valid[:, ::step, ::step].sum(dim=(1, 2))
        total = total + _reduce(sums, counts, reduction, None if totals is None else totals[k])
    return total


def gradient_matching_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    scales: int = 4,
    form: SSIForm = "mse",
    reduction: Reduction = "batch",
) -> torch.Tensor:
    """Multi-scale gradient-matching loss of the aligned residual (MiDaS ``GradientLoss``).

    The prediction is aligned to the target as in :func:`ssi_loss` (``form`` picks least squares or
    median/MAD), ``R = aligned - target``; at scale ``k`` (``k = 0 .. scales-1``, every ``2**k``-th pixel)
    the loss adds ``sum |R[i, j+1] - R[i, j]| + |R[i+1, j] - R[i, j]|`` over pairs whose two pixels are both
    valid, divided by the number of valid pixels at that scale. Scales are summed. Shapes as ``ssi_loss``.
    """
    if scales < 1:
        raise ValueError(f"expected scales >= 1, got {scales}")
    residual, valid = ssi_residual(pred, target, mask, form=form)
    return _gradient_from_residual(residual, valid, valid, scales, reduction)


def feature_alignment_loss(
    student_features: torch.Tensor,
    teacher_features: torch.Tensor,
    *,
    threshold: float = 0.85,
    mask: torch.Tensor | None = None,
    total: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """V1's feature-alignment loss: ``1 - cos(student, frozen encoder)`` summed over tokens not yet aligned,
    divided by the number of tokens (V1's ``1 - 1/HW sum cos``; the aligned tokens count in ``HW``).

    Args:
        student_features, teacher_features: the same shape, either ``(B, N, C)`` patch tokens or
            ``(B, C, h, w)`` feature maps (cosine taken over ``C``). The teacher is detached (frozen encoder).
        threshold: tokens whose similarity is already above it are ignored (0.85 in the paper); the
            selection is not differentiated.
        mask: optional bool ``(B, N)`` / ``(B, h, w)`` of tokens that may take part (the denominator counts them).
        total: the denominator instead of this batch's token count (the global count of a distributed or
            accumulated step).

    Returns:
        A scalar: the sum of ``1 - cos`` over the kept tokens / the number of tokens; 0 if none is kept.
    """
    if student_features.shape != teacher_features.shape:
        raise ValueError(
            "feature_alignment_loss: expected student and teacher features of the same shape, got "
            f"{tuple(student_features.shape)} and {tuple(teacher_features.shape)}"
        )
    if student_features.ndim not in (3, 4):
        raise ValueError(
            "feature_alignment_loss: expected (B, N, C) tokens or (B, C, h, w) maps, got shape "
            f"{tuple(student_features.shape)}"
        )
    dim = -1 if student_features.ndim == 3 else 1
    cos = F.cosine_similarity(student_features.float(), teacher_features.detach().float(), dim=dim, eps=1e-8)
    allowed = torch.ones_like(cos, dtype=torch.bool)
    if mask is not None:
        if mask.shape != cos.shape:
            raise ValueError(
                f"feature_alignment_loss: expected mask of shape {tuple(cos.shape)}, got {tuple(mask.shape)}"
            )
        allowed = mask.bool()
    keep = (cos.detach() < threshold) & allowed
    per_token = torch.where(keep, 1.0 - cos, torch.zeros_like(cos))
    denom = allowed.sum() if total is None else torch.as_tensor(total)
    return per_token.sum() / denom.clamp(min=1).to(cos.dtype)


def _silog_log_ratio(
    pred_depth_m: torch.Tensor,
    target_depth_m: torch.Tensor,
    mask: torch.Tensor | None,
    min_depth: float,
    max_depth: float | None,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``g = log(target) - log(pred)`` (0 at invalid pixels) and the valid mask, both (B, H, W)."""
    pred, target, valid = _check_inputs(pred_depth_m, target_depth_m, mask, "silog_loss")
    valid = valid & (target >= min_depth)
    if max_depth is not None:
        valid = valid & (target <= max_depth)
    one = torch.ones((), dtype=pred.dtype, device=pred.device)
    g = torch.where(valid, torch.log(torch.where(valid, target, one)) - torch.log(pred.clamp(min=eps)), 0 * one)
    return g, valid


def _safe_sqrt(value: torch.Tensor) -> torch.Tensor:
    """sqrt with value 0 and gradient 0 at (and below) 0 (the reference would give NaN)."""
    positive = value > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, value, torch.ones_like(value))), 0 * value)


def silog_totals(
    pred_depth_m: torch.Tensor,
    target_depth_m: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    min_depth: float = 1e-3,
    max_depth: float | None = None,
    reduction: Reduction = "batch",
    eps: float = 1e-6,
) -> torch.Tensor:
    """The statistics :func:`silog_loss` needs from every part of a global batch, float64, detached.

    ``"batch"``: ``(n, sum g, sum g**2)`` (the square root is taken of the *pooled* statistics, so every rank
    and micro-batch needs the global sums before its backward pass); ``"image"``: ``(number of samples with
    a valid pixel,)``. Sum them over ranks and micro-batches and pass the result as ``totals``.
    """
    with torch.no_grad():
        g, valid = _silog_log_ratio(pred_depth_m, target_depth_m, mask, min_depth, max_depth, eps)
        if reduction == "image":
            return valid.any(dim=(1, 2)).sum().double().reshape(1)
        if reduction != "batch":
            raise ValueError(f"expected reduction in {_REDUCTIONS}, got {reduction!r}")
        g = g.double()
        return torch.stack([valid.sum().double(), g.sum(), (g * g).sum()])


def silog_loss(
    pred_depth_m: torch.Tensor,
    target_depth_m: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    lambd: float = 0.5,
    min_depth: float = 1e-3,
    max_depth: float | None = None,
    reduction: Reduction = "batch",
    eps: float = 1e-6,
    totals: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scale-invariant log loss for metric depth (the reference metric trainer's ``SiLogLoss``).

    ``g = log(target) - log(pred)`` over valid pixels (``mask`` & target finite & ``min_depth <= target <=
    max_depth``); loss = ``sqrt(mean(g**2) - lambd * mean(g)**2)``, pooled over the whole batch
    (``reduction="batch"``, the reference) or per sample then averaged (``"image"``). Predictions are
    clamped at ``eps`` before the log (a sigmoid head can underflow to 0). The square root of 0 has gradient
    0 here (the reference would give NaN). Units: metres, (B, H, W).

    ``totals`` (:func:`silog_totals` summed over the ranks and micro-batches of one optimiser step) makes this
    batch's result its *share* of the global batch's loss: the shares' values add up to the global loss and
    their gradients to its gradient (``d sqrt(V) = dV / (2 sqrt(V))``, ``V`` from the global sums).
    """
    g, valid = _silog_log_ratio(pred_depth_m, target_depth_m, mask, min_depth, max_depth, eps)
    if reduction == "batch":
        if totals is None:
            n = valid.sum().clamp(min=1).to(g.dtype)
            return _safe_sqrt((g * g).sum() / n - lambd * (g.sum() / n) ** 2)
        n, s1, s2 = (t.to(g.dtype) for t in totals.to(g.device).unbind())
        n = n.clamp(min=1)
        root = _safe_sqrt(s2 / n - lambd * (s1 / n) ** 2)
        # First-order share of the pooled loss: its gradient is exactly the global loss's gradient restricted to
        # this batch's pixels; its value is root x this batch's fraction of the pixels.
        linear = ((g * g).sum() / n - 2 * lambd * (s1 / n**2) * g.sum()) / (2 * root).clamp(
            min=torch.finfo(g.dtype).tiny
        )
        linear = torch.where(root > 0, linear, 0 * linear)
        return root * (valid.sum().to(g.dtype) / n) + (linear - linear.detach())
    if reduction != "image":
        raise ValueError(f"expected reduction in {_REDUCTIONS}, got {reduction!r}")
    n = valid.sum(dim=(1, 2)).clamp(min=1).to(g.dtype)
    root = _safe_sqrt((g * g).sum(dim=(1, 2)) / n - lambd * (g.sum(dim=(1, 2)) / n) ** 2)
    has = valid.any(dim=(1, 2))
    denom = has.sum() if totals is None else totals.reshape(())
    return (root * has).sum() / denom.clamp(min=1).to(root.dtype)


# -------------------------------------------------------------------------------------- combined loss
@dataclass
class DepthLossConfig:
    """Configuration of :class:`DepthLoss` (the paper's ``L_ssi + 2 * L_gm`` by default).

    Attributes:
        form: SSI form (``"mse"`` as the MiDaS code the authors adapted, ``"mae"``, ``"median_mad"``).
        gradient_weight: weight of the gradient-matching term (2.0 in the paper; 0 disables it).
        scales: number of gradient scales (4).
        trim: fraction of largest-loss pixels ignored per sample (0.1 for pseudo labels, 0 for synthetic).
        normalize_target: min-max normalise each target to [0, 1] over its valid pixels first (V1 does;
            makes the loss invariant to a positive affine change of the target as well).
        reduction: ``"batch"`` or ``"image"``.
    """

    form: SSIForm = "mse"
    gradient_weight: float = 2.0
    scales: int = 4
    trim: float = 0.0
    normalize_target: bool = True
    reduction: Reduction = "batch"

    def __post_init__(self) -> None:
        if self.form not in _FORMS:
            raise ValueError(f"expected form in {_FORMS}, got {self.form!r}")
        if self.reduction not in _REDUCTIONS:
            raise ValueError(f"expected reduction in {_REDUCTIONS}, got {self.reduction!r}")
        if self.gradient_weight < 0:
            raise ValueError(f"expected gradient_weight >= 0, got {self.gradient_weight}")
        if self.scales < 1:
            raise ValueError(f"expected scales >= 1, got {self.scales}")
        if not 0.0 <= self.trim < 1.0:
            raise ValueError(f"expected trim in [0, 1), got {self.trim}")


class DepthLoss(nn.Module):
    """``L_ssi + gradient_weight * L_gm`` on disparity, optionally trimmed (see :class:`DepthLossConfig`).

    ``forward(pred, target, mask=None, regions=None) -> scalar``; :meth:`compute` returns the terms too
    (``{"loss", "ssi", "gm"}``, detached except ``"loss"``) for logging.

    ``regions`` (bool (B, H, W), e.g. from CutMix) splits each sample into two independent parts
    (``~regions`` and ``regions``) that are aligned and scored separately, because the two halves of a
    CutMix image carry labels with different unknown scales and shifts. Each part counts as a sample.

    Example::

        criterion = DepthLoss(DepthLossConfig(trim=0.1))      # student on pseudo labels
        loss = criterion(model(images), batch["disparity"], batch["valid_mask"])
    """

    def __init__(self, config: DepthLossConfig | None = None, **overrides: object) -> None:
        super().__init__()
        base = asdict(config) if config is not None else {}
        base.update(overrides)
        self.config = DepthLossConfig(**base)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in asdict(self.config).items())

    def _split_regions(self, valid: torch.Tensor, regions: torch.Tensor | None) -> torch.Tensor:
        if regions is None:
            return valid
        if regions.shape != valid.shape or regions.dtype != torch.bool:
            raise ValueError(
                f"DepthLoss: expected bool regions of shape {tuple(valid.shape)}, got "
                f"{regions.dtype} {tuple(regions.shape)}"
            )
        return torch.cat([valid & ~regions, valid & regions])

    def totals(
        self, target: torch.Tensor, mask: torch.Tensor | None = None, regions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The loss's denominators for this batch, ``(1 + scales,)`` float64: the SSI term's, then each gradient
        scale's (valid pixels, or samples with a valid pixel for ``reduction="image"``).

        They depend on the labels only (trimmed pixels still count, as in MiDaS), so a trainer can sum them over
        every rank and accumulation micro-batch *before* the forward pass and give the sum to :meth:`compute`:
        the step then optimises the loss of the global batch, whatever the world size and accumulation.
        """
        valid = torch.isfinite(target) if mask is None else (mask & torch.isfinite(target))
        return _denominators(self._split_regions(valid, regions), self.config.scales, self.config.reduction)

    def compute(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
        regions: torch.Tensor | None = None,
        totals: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The terms; ``totals`` (from :meth:`totals`, summed over a global batch) replaces this batch's own
        denominators, making the result this batch's share of the global batch's loss."""
        cfg = self.config
        _, _, valid = _check_inputs(pred, target, mask, "DepthLoss")
        if regions is not None:
            valid = self._split_regions(valid, regions)
            pred = torch.cat([pred, pred])
            target = torch.cat([target, target])
        if totals is not None:
            totals = totals.to(pred.device)
        if cfg.normalize_target:
            target = normalize_minmax(target, valid)
        residual, valid = ssi_residual(pred, target, valid, form=cfg.form)
        kept = trim_mask(_pixel_loss(residual, cfg.form), valid, cfg.trim)
        ssi = _ssi_from_residual(residual, kept, valid, cfg.form, cfg.reduction, None if totals is None else totals[0])
        loss = ssi
        gm = ssi.new_zeros(())
        if cfg.gradient_weight > 0:
            gm = _gradient_from_residual(
                residual, kept, valid, cfg.scales, cfg.reduction, None if totals is None else totals[1:]
            )
            loss = ssi + cfg.gradient_weight * gm
        return {"loss": loss, "ssi": ssi.detach(), "gm": gm.detach()}

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
        regions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.compute(pred, target, mask, regions)["loss"]
