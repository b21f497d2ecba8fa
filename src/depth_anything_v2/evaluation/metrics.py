"""Depth metrics, evaluation crops and prediction alignment.

Metric definitions follow the reference's ``metric_depth/util/metric.py`` exactly (natural-log SiLog without the
x100 of the KITTI server, ``sq_rel = mean(diff**2 / gt)``), computed in float64 over the valid pixels:

=============  =================================================================
``abs_rel``    ``mean(|p - g| / g)``
``sq_rel``     ``mean((p - g)**2 / g)``
``rmse``       ``sqrt(mean((p - g)**2))``  (metres)
``rmse_log``   ``sqrt(mean((ln p - ln g)**2))``
``log10``      ``mean(|log10 p - log10 g|)``
``silog``      ``sqrt(mean(e**2) - 0.5 * mean(e)**2)`` with ``e = ln p - ln g``
``d1/d2/d3``   fraction of pixels with ``max(p/g, g/p) < 1.25**k``
=============  =================================================================

Aggregation: ``per_image`` averages each image's metrics over images (what the reference trainer and the paper
report); ``pooled`` treats the whole dataset as one image (every pixel weighs the same). Both come out of
:class:`MetricAccumulator`.

Alignment (how a prediction becomes metric depth before scoring), see :func:`align_prediction`:

* ``none``: the prediction is already depth in metres (metric models).
* ``scale``: least-squares scale in depth space.
* ``scale_shift_disparity``: the paper's zero-shot protocol. Ground-truth depth -> disparity ``1/g`` on the
  valid pixels; least-squares scale and shift of the predicted disparity to it; depth = ``1 / aligned``.
* ``scale_shift_depth``: least-squares scale and shift in depth space.
* ``median``: median scaling in depth space (Eigen et al.).

After alignment every prediction is clipped to the evaluation range ``[min_depth, max_depth]`` (as BTS and
Marigold do). For disparity alignment the *aligned disparity* is clamped to ``[1/max_depth, 1/min_depth]``
before inverting, which is the same clip and also catches aligned disparities <= 0 (a negative shift can push
far pixels below zero; they become ``max_depth``). When a benchmark has no upper cap (``max_depth = inf``), the
sample's largest valid ground-truth depth is used as the upper clip.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from ..align.least_squares import fit_scale, fit_scale_shift

__all__ = [
    "ALIGNMENTS",
    "CROPS",
    "METRIC_NAMES",
    "AlignmentError",
    "MetricAccumulator",
    "align_prediction",
    "compute_metrics",
    "crop_mask",
    "evaluation_mask",
    "fit_alignment",
    "pixel_sums",
    "score_pairs",
]

METRIC_NAMES: tuple[str, ...] = ("d1", "d2", "d3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog")
#: Metrics where larger is better (the rest: smaller is better).
HIGHER_IS_BETTER = frozenset({"d1", "d2", "d3"})

Alignment = Literal["none", "scale", "scale_shift_disparity", "scale_shift_depth", "median"]
ALIGNMENTS: tuple[str, ...] = ("none", "scale", "scale_shift_disparity", "scale_shift_depth", "median")
PredictionKind = Literal["disparity", "metric"]  # the predictor's DepthResult.kind

Crop = Literal["none", "garg", "eigen", "nyu_eigen"]
CROPS: tuple[str, ...] = ("none", "garg", "eigen", "nyu_eigen")

# Fractions of the image size, as in the standard KITTI evaluation code (BTS / Monodepth).
_KITTI_CROPS = {
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
}
# NYU Depth v2 Eigen crop: rows 45:471, cols 41:601 of the 480 x 640 frame.
_NYU_EIGEN = (45, 471, 41, 601)
_NYU_SIZE = (480, 640)

# Pixel sums behind the pooled metrics (order matters only for readability).
_SUM_KEYS = ("n", "abs_rel", "sq_rel", "sq", "log_sq", "log", "log10", "d1", "d2", "d3")


class AlignmentError(ValueError):
    """An alignment mode that cannot apply to this prediction (e.g. ``none`` on relative disparity)."""


def crop_mask(height: int, width: int, crop: str) -> np.ndarray:
    """Boolean ``(height, width)`` mask of the evaluation crop ``crop``.

    ``garg`` / ``eigen``: the KITTI crops, defined as fractions of the image size (``int(frac * size)``, as in
    the standard code). ``nyu_eigen``: rows 45:471, cols 41:601 at 480 x 640; at another size the same
    fractions of the frame are used. ``none``: everything.
    """
    mask = np.zeros((height, width), dtype=bool)
    if crop == "none":
        mask[:] = True
    elif crop in _KITTI_CROPS:
        top, bottom, left, right = _KITTI_CROPS[crop]
        mask[int(top * height) : int(bottom * height), int(left * width) : int(right * width)] = True
    elif crop == "nyu_eigen":
        top, bottom, left, right = _NYU_EIGEN
        if (height, width) != _NYU_SIZE:
            top, bottom = round(top * height / _NYU_SIZE[0]), round(bottom * height / _NYU_SIZE[0])
            left, right = round(left * width / _NYU_SIZE[1]), round(right * width / _NYU_SIZE[1])
        mask[top:bottom, left:right] = True
    else:
        raise ValueError(f"expected crop one of {CROPS}, got {crop!r}")
    return mask


def evaluation_mask(
    depth_m: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    min_depth: float = 1e-3,
    max_depth: float = math.inf,
    crop: str = "none",
) -> np.ndarray:
    """Pixels that count: ``valid & isfinite(gt) & min_depth <= gt <= max_depth & crop``.

    The range is inclusive on both ends, as in the reference trainer's ``(depth >= min) & (depth <= max)``.
    """
    depth_m = np.asarray(depth_m)
    if depth_m.ndim != 2:
        raise ValueError(f"expected ground-truth depth of shape (H, W), got {depth_m.shape}")
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(depth_m) & (depth_m >= min_depth) & (depth_m <= max_depth)
    if valid is not None:
        valid = np.asarray(valid)
        if valid.shape != depth_m.shape:
            raise ValueError(f"expected valid mask of shape {depth_m.shape}, got {valid.shape}")
        mask &= valid.astype(bool)
    if crop != "none":
        mask &= crop_mask(*depth_m.shape, crop)
    return mask


def _to_depth(pred: np.ndarray, kind: str) -> np.ndarray:
    """A prediction as (relative or metric) depth; disparity <= 0 becomes +inf (clipped to max later)."""
    if kind == "metric":
        return pred
    with np.errstate(divide="ignore"):
        return np.where(pred > 0, 1.0 / np.where(pred > 0, pred, 1.0), np.inf)


def fit_alignment(
    pred_values: np.ndarray,
    gt_values_m: np.ndarray,
    *,
    alignment: str,
    kind: str,
    min_depth: float = 1e-3,
    max_depth: float = math.inf,
) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, float]]:
    """Fit ``alignment`` on the valid pixels' values (1-D) and return ``(apply, info)``.

    ``apply(pred)`` maps any array of predictions to clipped metric depth (float64); ``info`` holds the fitted
    ``scale``/``shift``. Fitting on the extracted values keeps a 24-Mpixel ETH3D frame cheap. See
    :func:`align_prediction` for the arguments.
    """
    if alignment not in ALIGNMENTS:
        raise ValueError(f"expected alignment one of {ALIGNMENTS}, got {alignment!r}")
    if kind not in ("disparity", "metric"):
        raise ValueError(f"expected prediction kind 'disparity' or 'metric', got {kind!r}")
    pv = np.asarray(pred_values, dtype=np.float64).ravel()
    gv = np.asarray(gt_values_m, dtype=np.float64).ravel()
    if pv.shape != gv.shape:
        raise ValueError(f"expected as many predictions as ground-truth values, got {pv.size} and {gv.size}")
    lo = float(min_depth)
    hi = float(max_depth)
    if not math.isfinite(hi):
        hi = float(gv.max()) if gv.size else math.inf

    def clip(depth: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.clip(np.nan_to_num(depth, nan=hi, posinf=hi, neginf=lo), lo, hi)

    if alignment == "none":
        if kind != "metric":
            raise AlignmentError(
                "alignment 'none' needs a metric prediction (depth in metres), got relative disparity; use "
                "'scale_shift_disparity' for relative models"
            )
        return lambda pred: clip(np.asarray(pred, dtype=np.float64)), {}

    if alignment == "scale_shift_disparity":
        to_disp = (lambda x: x) if kind == "disparity" else _to_disparity
        s_t, t_t = fit_scale_shift(torch.from_numpy(to_disp(pv))[None], torch.from_numpy(1.0 / gv)[None])
        s, t = float(s_t), float(t_t)
        # Clamping the aligned disparity to [1/hi, 1/lo] is the depth clip to [lo, hi]; it also sends aligned
        # disparities <= 0 (far pixels under a negative shift) to hi instead of a negative depth.
        disp_lo = 1.0 / hi if hi > 0 else 0.0
        disp_hi = 1.0 / lo if lo > 0 else math.inf

        def apply_disp(pred: np.ndarray) -> np.ndarray:
            aligned = np.clip(s * to_disp(np.asarray(pred, dtype=np.float64)) + t, disp_lo, disp_hi)
            with np.errstate(divide="ignore"):
                return clip(1.0 / aligned)

        return apply_disp, {"scale": s, "shift": t}

    pd = _to_depth(pv, kind)
    finite = np.isfinite(pd)
    p, g = torch.from_numpy(pd[finite])[None], torch.from_numpy(gv[finite])[None]
    if alignment == "scale":
        s, t = float(fit_scale(p, g)), 0.0
    elif alignment == "median":
        # numpy's O(n) selection; same definition as alignment.median_scale (mean of the middle two).
        med_p = float(np.median(pd[finite])) if finite.any() else 0.0
        s, t = (float(np.median(gv[finite])) / med_p if med_p != 0 else 0.0), 0.0
    else:  # scale_shift_depth
        s_t, t_t = fit_scale_shift(p, g)
        s, t = float(s_t), float(t_t)
    return (lambda pred: clip(s * _to_depth(np.asarray(pred, dtype=np.float64), kind) + t)), {"scale": s, "shift": t}


def align_prediction(
    pred: np.ndarray,
    gt_depth_m: np.ndarray,
    mask: np.ndarray,
    *,
    alignment: str,
    kind: str,
    min_depth: float = 1e-3,
    max_depth: float = math.inf,
) -> tuple[np.ndarray, dict[str, float]]:
    """Turn a prediction into metric depth by ``alignment`` fitted over ``mask``; clip to the eval range.

    Args:
        pred: ``(H, W)`` prediction at ground-truth resolution.
        gt_depth_m: ``(H, W)`` ground-truth depth in metres (only read where ``mask``).
        mask: ``(H, W)`` bool, the pixels to fit on (normally :func:`evaluation_mask`).
        alignment: one of :data:`ALIGNMENTS`.
        kind: ``"disparity"`` (relative models: larger = closer) or ``"metric"`` (metric models, metres).
        min_depth, max_depth: the evaluation range; the aligned depth is clipped to it (``inf`` -> the largest
            valid ground truth of this sample).

    Returns:
        ``(depth_m float64 (H, W), {"scale": s, "shift": t})`` (shift 0 for scale-only modes; empty for
        ``none``).

    Raises:
        AlignmentError: ``alignment="none"`` with a disparity prediction.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt_depth_m)
    mask = np.asarray(mask, dtype=bool)
    if pred.shape != gt.shape or mask.shape != gt.shape:
        raise ValueError(
            f"expected prediction, ground truth and mask of one shape, got {pred.shape}, {gt.shape}, {mask.shape}"
        )
    apply, info = fit_alignment(
        pred[mask], gt[mask], alignment=alignment, kind=kind, min_depth=min_depth, max_depth=max_depth
    )
    return apply(pred), info


def _to_disparity(pred_depth: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(pred_depth > 0, 1.0 / np.where(pred_depth > 0, pred_depth, 1.0), 0.0)


def pixel_sums(pred_depth_m: np.ndarray, gt_depth_m: np.ndarray) -> dict[str, float]:
    """Sums over the given (already masked, 1-D or any shape) pixels behind every metric; see
    :func:`metrics_from_sums`. Predictions must be > 0 (clip them first)."""
    p = np.asarray(pred_depth_m, dtype=np.float64).ravel()
    g = np.asarray(gt_depth_m, dtype=np.float64).ravel()
    if p.shape != g.shape:
        raise ValueError(f"expected prediction and ground truth of the same size, got {p.size} and {g.size}")
    diff = p - g
    log_diff = np.log(p) - np.log(g)
    ratio = np.maximum(p / g, g / p)
    return {
        "n": float(p.size),
        "abs_rel": float(np.sum(np.abs(diff) / g)),
        "sq_rel": float(np.sum(diff**2 / g)),
        "sq": float(np.sum(diff**2)),
        "log_sq": float(np.sum(log_diff**2)),
        "log": float(np.sum(log_diff)),
        # |log10 p - log10 g| = |ln p - ln g| / ln 10: one pass fewer over 24-Mpixel ETH3D frames.
        "log10": float(np.sum(np.abs(log_diff))) / math.log(10),
        "d1": float(np.sum(ratio < 1.25)),
        "d2": float(np.sum(ratio < 1.25**2)),
        "d3": float(np.sum(ratio < 1.25**3)),
    }


def metrics_from_sums(sums: dict[str, float]) -> dict[str, float]:
    """The nine metrics from :func:`pixel_sums` (or several added together)."""
    n = sums["n"]
    if n <= 0:
        return {k: math.nan for k in METRIC_NAMES}
    mean_log_sq = sums["log_sq"] / n
    mean_log = sums["log"] / n
    return {
        "d1": sums["d1"] / n,
        "d2": sums["d2"] / n,
        "d3": sums["d3"] / n,
        "abs_rel": sums["abs_rel"] / n,
        "sq_rel": sums["sq_rel"] / n,
        "rmse": math.sqrt(sums["sq"] / n),
        "rmse_log": math.sqrt(mean_log_sq),
        "log10": sums["log10"] / n,
        # max(0, .) only guards float rounding: mean(e^2) >= mean(e)^2 > 0.5 mean(e)^2 mathematically.
        "silog": math.sqrt(max(0.0, mean_log_sq - 0.5 * mean_log**2)),
    }


def compute_metrics(pred_depth_m: np.ndarray, gt_depth_m: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """The nine metrics of one image over ``mask`` (all pixels if ``None``), as the reference's ``eval_depth``.

    Example::

        >>> import numpy as np
        >>> m = compute_metrics(np.array([1.0, 2.0]), np.array([1.0, 4.0]))
        >>> m["abs_rel"], m["d1"]
        (0.25, 0.5)
    """
    p = np.asarray(pred_depth_m)
    g = np.asarray(gt_depth_m)
    if mask is not None:
        p, g = p[mask], g[mask]
    return metrics_from_sums(pixel_sums(p, g))


@dataclass
class MetricAccumulator:
    """Collects per-image metrics and pixel sums; gives ``per_image`` means and ``pooled`` metrics.

    Adding images in a fixed order gives bit-identical results however the work was split (the distributed
    runner gathers records and adds them in dataset order).
    """

    per_image: list[dict[str, float]] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_SUM_KEYS, 0.0))

    def add(self, sums: dict[str, float]) -> dict[str, float]:
        """Add one image's :func:`pixel_sums`; returns that image's metrics."""
        metrics = metrics_from_sums(sums)
        self.per_image.append(metrics)
        for k in _SUM_KEYS:
            self.sums[k] += sums[k]
        return metrics

    def __len__(self) -> int:
        return len(self.per_image)

    def mean(self) -> dict[str, float]:
        """Per-image averaging (the reference's): the mean over images of each image's metric."""
        if not self.per_image:
            return {k: math.nan for k in METRIC_NAMES}
        return {k: math.fsum(m[k] for m in self.per_image) / len(self.per_image) for k in METRIC_NAMES}

    def pooled(self) -> dict[str, float]:
        """Dataset-level metrics: every valid pixel of every image weighs the same."""
        return metrics_from_sums(self.sums)


def score_pairs(
    pairs: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    *,
    alignment: str = "none",
    kind: str = "metric",
    min_depth: float = 1e-3,
    max_depth: float = math.inf,
    crop: str = "none",
    min_valid_pixels: int = 10,
) -> dict:
    """Score already-computed ``(prediction, gt_depth_m, valid_or_None)`` triples.

    Each prediction is aligned per image (``alignment``, ``kind`` as in :func:`align_prediction`), clipped to
    ``[min_depth, max_depth]`` and scored over :func:`evaluation_mask`. Images with fewer than
    ``min_valid_pixels`` valid pixels are skipped (the reference trainer skips below 10).

    Returns:
        ``{"metrics": per-image means, "metrics_pooled": ..., "num_images": n, "num_skipped": k}``.
    """
    acc = MetricAccumulator()
    skipped = 0
    for pred, gt, valid in pairs:
        gt = np.asarray(gt)
        pred = np.asarray(pred)
        if pred.shape != gt.shape:
            raise ValueError(f"expected prediction of the ground truth's shape {gt.shape}, got {pred.shape}")
        mask = evaluation_mask(gt, valid, min_depth=min_depth, max_depth=max_depth, crop=crop)
        if int(mask.sum()) < min_valid_pixels:
            skipped += 1
            continue
        pred_v, gt_v = pred[mask], gt[mask]
        apply, _ = fit_alignment(pred_v, gt_v, alignment=alignment, kind=kind, min_depth=min_depth, max_depth=max_depth)
        acc.add(pixel_sums(apply(pred_v), gt_v))
    return {
        "metrics": acc.mean(),
        "metrics_pooled": acc.pooled(),
        "num_images": len(acc),
        "num_skipped": skipped,
    }
