"""Fuse a relative (or metric) prediction with stereo depth: dense metric depth without seams or flicker.

Per frame (:meth:`StereoFusion.fuse`):

1. **Fit.** Over the valid stereo pixels (``0 < depth``, inside ``[min_depth_m, max_depth_m]``; at most
   ``max_fit_points`` of them, a random subset), fit ``1 / Z_stereo ~= scale * disparity + shift`` with the
   project's robust metric alignment (:func:`depth_anything_v2.align.metric.robust_scale_shift`: RANSAC over
   pairs, least-squares refits on the inliers, an inlier is right within ``inlier_rtol`` in depth). A fit
   fails when it raises, when fewer than ``min_inlier_ratio`` of the points agree, or when stereo covers less
   than ``min_coverage`` of the frame.
2. **Temporal smoothing.** The scale and shift in use follow the per-frame fits with an exponential moving
   average (``smoothing`` = weight of the new fit), so the metric scale does not flicker. When the smoothed
   line explains the new frame much worse than the frame's own fit (its inlier ratio drops by more than
   ``reset_drop``: a scene cut, a new model), it is reset to the new fit. A failed fit keeps the last good
   line (``status: "fallback"``); before any good fit there is none (``status: "failed"``: stereo only).
3. **Combine** (in inverse depth, where stereo noise and model errors are both roughly uniform):

   * ``replace``: ``Z = 1 / (scale * disparity + shift)`` everywhere.
   * ``fill`` (default): stereo where it is valid and *trusted* (within ``inlier_rtol`` of the aligned
     model: stereo outliers become holes), and in the holes the aligned model corrected by the stereo
     residual interpolated smoothly into the hole, ``1/Z = a + R`` with ``a = scale * d + shift`` and
     ``R`` a membrane interpolation of ``1/Z_stereo - a`` (push-pull pyramid). This is seamless cloning
     (Pérez et al. 2003: keep the model's gradients inside the hole, match stereo at its border), so there is
     no step at hole borders and the model's low-frequency distortion is corrected from the surrounding
     stereo. The last ``feather_px`` pixels of stereo before a hole blend linearly into ``a + R``, so stereo
     noise does not print a seam either.

Pixels whose fused inverse depth is ``<= 0`` (beyond infinity: sky) are ``NaN``.

Example::

    >>> fusion = StereoFusion(FusionConfig(mode="fill"))
    >>> out = fusion.fuse(disparity, stereo_depth_mm)      # float (H, W), uint16 (H, W) mm
    >>> out.depth_m, out.fit.to_dict()                     # float32 (H, W) metres; the JSONL log line
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from ..align.metric import AlignmentError, robust_scale_shift

__all__ = ["FUSE_MODES", "FitRecord", "FusionConfig", "FusionResult", "StereoFusion", "fill_smooth"]

log = logging.getLogger(__name__)

FUSE_MODES = ("fill", "replace")


@dataclass(frozen=True)
class FusionConfig:
    """Fusion settings (see the module docstring)."""

    mode: Literal["fill", "replace"] = "fill"
    inlier_rtol: float = 0.1
    smoothing: float = 0.2
    reset_drop: float = 0.2
    min_inlier_ratio: float = 0.5
    min_coverage: float = 0.02
    min_depth_m: float = 0.1
    max_depth_m: float = 30.0
    max_fit_points: int = 20000
    feather_px: int = 4

    def __post_init__(self) -> None:
        if self.mode not in FUSE_MODES:
            raise ValueError(f"expected fusion mode one of {FUSE_MODES}, got {self.mode!r}")
        if not 0 < self.smoothing <= 1:
            raise ValueError(f"expected smoothing in (0, 1], got {self.smoothing}")
        if not self.inlier_rtol > 0:
            raise ValueError(f"expected inlier_rtol > 0, got {self.inlier_rtol}")
        if not 0 < self.min_depth_m < self.max_depth_m:
            raise ValueError(f"expected 0 < min_depth_m < max_depth_m, got {self.min_depth_m}, {self.max_depth_m}")


@dataclass
class FitRecord:
    """Fit quality of one frame (one line of the JSONL fit log).

    ``scale``/``shift``: the line in use (``1/Z = scale * d + shift``, after smoothing or fallback), ``None``
    when there is none; ``frame_scale``/``frame_shift``: this frame's own fit (``None`` when it failed);
    ``n_points``/``n_inliers``/``inlier_ratio``/``rmse_mm``: of the frame's fit over the sampled stereo pixels;
    ``coverage``: fraction of the frame with valid stereo; ``status``: ``"ok"``, ``"reset"``, ``"fallback"``
    or ``"failed"``; ``note``: why, when not ``"ok"``.
    """

    status: str
    scale: float | None
    shift: float | None
    frame_scale: float | None = None
    frame_shift: float | None = None
    n_points: int = 0
    n_inliers: int = 0
    inlier_ratio: float = 0.0
    rmse_mm: float | None = None
    coverage: float = 0.0
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FusionResult:
    """``depth_m``: float32 ``(H, W)`` metres, NaN where undefined; ``fit``: the frame's :class:`FitRecord`."""

    depth_m: np.ndarray
    fit: FitRecord


def fill_smooth(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Smooth interpolation of ``values`` known where ``weights > 0`` into everything (push-pull pyramid).

    Pushes ``(values * weights, weights)`` down a Gaussian pyramid, then pulls the normalised estimate back up,
    each level taking its own estimate where it has support and the coarser one where it has not. The finest
    level is skipped, so the result is a smoothed field (noise averaged over a few pixels) that varies
    continuously into holes of any size. float32 ``(H, W)``; zeros when no weight at all.
    """
    import cv2

    w = np.asarray(weights, np.float32)
    v = np.where(w > 0, np.asarray(values, np.float32), 0.0).astype(np.float32) * w
    pyramid = [(v, w)]
    while min(pyramid[-1][0].shape) > 4:
        pv, pw = pyramid[-1]
        pyramid.append((cv2.pyrDown(pv), cv2.pyrDown(pw)))
    cv, cw = pyramid[-1]
    total = float(cw.sum())
    estimate = np.full(cv.shape, float(cv.sum()) / total if total > 0 else 0.0, np.float32)
    for level in range(len(pyramid) - 1, 0, -1):
        pv, pw = pyramid[level]
        alpha = np.clip(pw * 4.0, 0.0, 1.0)  # a quarter of the footprint covered is enough support
        estimate = alpha * (pv / np.maximum(pw, 1e-12)) + (1.0 - alpha) * estimate
        h, w_ = pyramid[level - 1][0].shape
        estimate = cv2.pyrUp(estimate, dstsize=(w_, h))
    return estimate


class StereoFusion:
    """Stateful per-stream fusion (the smoothed scale/shift carries over between frames); see the module doc."""

    def __init__(self, config: FusionConfig | None = None) -> None:
        self.config = config or FusionConfig()
        self.line: tuple[float, float] | None = None  # smoothed (scale, shift)
        self.frames = 0

    def fuse(self, disparity: np.ndarray, stereo_depth_mm: np.ndarray) -> FusionResult:
        """Fuse one frame. ``disparity``: float ``(H, W)`` relative prediction (for a metric model pass
        ``1 / depth_m``); ``stereo_depth_mm``: uint16 ``(H, W)`` millimetres, 0 = invalid."""
        disparity = np.asarray(disparity, np.float64)
        stereo = np.asarray(stereo_depth_mm)
        if disparity.ndim != 2 or stereo.shape != disparity.shape:
            raise ValueError(
                f"expected disparity and stereo depth of the same (H, W), got {disparity.shape} and {stereo.shape}"
            )
        cfg = self.config
        z = stereo.astype(np.float64) / 1000.0
        valid = (z >= cfg.min_depth_m) & (z <= cfg.max_depth_m) & np.isfinite(disparity)
        fit = self._fit(disparity, z, valid)
        self.frames += 1
        if self.line is None:
            depth = np.where(valid, z, np.nan).astype(np.float32)
            return FusionResult(depth, fit)
        scale, shift = self.line
        aligned = scale * disparity + shift
        inv = aligned if cfg.mode == "replace" else self._fill(aligned, z, valid)
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = np.where(inv > 0, 1.0 / inv, np.nan).astype(np.float32)
        return FusionResult(depth, fit)

    def _fill(self, aligned: np.ndarray, z: np.ndarray, valid: np.ndarray) -> np.ndarray:
        import cv2

        cfg = self.config
        with np.errstate(divide="ignore"):
            inv_z = np.where(valid, 1.0 / np.where(valid, z, 1.0), 0.0)
        trusted = valid & (np.abs(aligned - inv_z) <= cfg.inlier_rtol * inv_z)
        residual = fill_smooth(inv_z - aligned, trusted.astype(np.float32)).astype(np.float64)
        model = aligned + residual
        if cfg.feather_px > 0:
            # Distance (px) from each trusted pixel to the nearest untrusted one: stereo fades out at holes.
            dist = cv2.distanceTransform(trusted.astype(np.uint8), cv2.DIST_L2, 3)
            weight = np.clip(dist / (cfg.feather_px + 1), 0.0, 1.0)
        else:
            weight = trusted.astype(np.float64)
        return weight * inv_z + (1.0 - weight) * model

    def _fit(self, disparity: np.ndarray, z: np.ndarray, valid: np.ndarray) -> FitRecord:
        cfg = self.config
        coverage = float(valid.mean())
        idx = np.flatnonzero(valid)
        if coverage < cfg.min_coverage or idx.size < 5:
            return self._fallback(f"stereo covers {coverage:.1%} of the frame (< {cfg.min_coverage:.0%})", coverage)
        rng = np.random.default_rng(self.frames)
        if idx.size > cfg.max_fit_points:
            idx = rng.choice(idx, cfg.max_fit_points, replace=False)
        d, zs = disparity.ravel()[idx], z.ravel()[idx]
        inv = 1.0 / zs
        try:
            s, t, inliers = robust_scale_shift(d, inv, cfg.inlier_rtol * inv, seed=self.frames)
        except AlignmentError as e:
            return self._fallback(f"fit failed: {e}", coverage, n_points=d.size)
        ratio = float(inliers.mean())
        pred = s * d[inliers] + t
        rmse_mm = float(np.sqrt(np.mean((1000.0 / pred - 1000.0 * zs[inliers]) ** 2))) if inliers.any() else None
        stats = {"n_points": int(d.size), "n_inliers": int(inliers.sum()), "inlier_ratio": ratio, "rmse_mm": rmse_mm}
        if ratio < cfg.min_inlier_ratio:
            note = f"only {ratio:.0%} of the stereo points agree with the fit (< {cfg.min_inlier_ratio:.0%})"
            return self._fallback(note, coverage, frame_scale=s, frame_shift=t, **stats)
        status, note = "ok", ""
        if self.line is None:
            self.line = (s, t)
        else:
            s0, t0 = self.line
            ratio_smoothed = float(np.mean(np.abs(s0 * d + t0 - inv) <= cfg.inlier_rtol * inv))
            if ratio_smoothed < ratio - cfg.reset_drop:
                self.line, status = (s, t), "reset"
                note = f"smoothed line explains {ratio_smoothed:.0%} of the points vs {ratio:.0%}: reset"
            else:
                a = cfg.smoothing
                self.line = ((1 - a) * s0 + a * s, (1 - a) * t0 + a * t)
        return FitRecord(status, *self.line, frame_scale=s, frame_shift=t, coverage=coverage, note=note, **stats)

    def _fallback(self, reason: str, coverage: float, **stats: object) -> FitRecord:
        if self.line is None:
            log.warning("fusion: %s; no earlier fit to fall back to: stereo only", reason)
            return FitRecord("failed", None, None, coverage=coverage, note=reason, **stats)
        log.warning("fusion: %s; using the last good scale", reason)
        return FitRecord("fallback", *self.line, coverage=coverage, note=f"{reason}; last good scale used", **stats)
