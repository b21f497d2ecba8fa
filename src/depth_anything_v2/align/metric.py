"""Metric alignment: turn a relative (disparity) prediction into metres using a few known depths.

A relative model predicts affine-invariant inverse depth: ``1 / Z ~= scale * disparity + shift`` for some
unknown ``scale > 0`` and ``shift``. Given known depths at some pixels (a LiDAR scan or a stereo depth image
projected into the image, or a handful of measured distances), :func:`align_to_metric` fits ``scale`` and
``shift`` robustly in that inverse-depth space and returns ``depth_m = 1 / (scale * disparity + shift)``.

The fit (:func:`robust_scale_shift`):

1. RANSAC over pairs of known points (two points fix a line). Every hypothesis with ``scale > 0`` is scored by
   its inliers: points whose inverse depth it predicts within a relative tolerance,
   ``|scale * d + shift - 1/Z| <= inlier_rtol / Z`` (to first order: the depth is right within
   ``inlier_rtol``, 10 % by default). Hypotheses are scored on at most ``max_score_points`` points (a random
   subset), so dense stereo maps with millions of pixels stay fast.
2. Ordinary least squares (unweighted, in inverse-depth space, as the evaluation protocol of the project does;
   ``depth_anything_v2.align.least_squares.fit_scale_shift``) on the inliers of the best hypothesis, then the inliers are
   recomputed with the refitted line and the fit repeated until the inlier set stops changing (at most
   ``refit_iterations`` times).

Few points: with 2 known points the line through them is exact; with 3 or 4 a plain least-squares fit is used.
Neither can tell an outlier from an inlier, so the result says ``robust=False`` and explains in ``note``.
From ``MIN_ROBUST_POINTS`` (5) points on, RANSAC runs.

Output: where ``scale * d + shift <= 0`` the line puts the pixel at or beyond infinity (typically sky, where
relative models predict ~0); those pixels are ``NaN`` in ``depth_m`` (never ``inf`` or a negative depth), and
``max_depth_m`` optionally turns everything farther than a cap into ``NaN`` too.

Known-depth files (:func:`read_known_depth`):

* ``.png`` / ``.tif`` / ``.tiff`` integer images: 16-bit (or 8-bit) counts, ``png_unit_m`` metres per count
  (default 0.001: millimetres, as OAK-D, RealSense, Kinect and ROS depth images), 0 = no value.
  Floating-point TIFFs are read as metres.
* ``.npy``: a float ``(H, W)`` array in metres; ``NaN``, ``inf``, 0 and negative values are "no value".
* ``.csv`` / ``.txt``: one known point per line, ``row,col,depth_m`` (commas, semicolons or whitespace);
  row/col are pixel coordinates in the image being aligned (0-based, row first, may be fractional and are
  rounded to the nearest pixel). Blank lines, ``#`` comments and a non-numeric header line are skipped.

If a depth image's shape differs from the image's, it is brought to the image's shape by nearest neighbour:
when the target is larger in both sides, each target pixel takes its nearest source pixel
(``cv2.INTER_NEAREST``); otherwise every valid source pixel is placed on its nearest target pixel (pixel
centres mapped with ``(i + 0.5) * H / h - 0.5``) and pixels receiving several values take their mean. The
second rule never drops a sparse LiDAR point when shrinking (plain nearest resizing would drop most of them).
Aspect ratios that differ by more than 2 % are refused: that is almost always the wrong file.

Example::

    >>> import numpy as np
    >>> from depth_anything_v2.align.metric import align_to_metric
    >>> disparity = np.random.default_rng(0).uniform(0.5, 5.0, (48, 64)).astype(np.float32)
    >>> depth_true = 1.0 / (0.2 * disparity + 0.05)
    >>> mask = np.zeros(disparity.shape, bool); mask[::8, ::8] = True
    >>> r = align_to_metric(disparity, np.where(mask, depth_true, 0), mask)
    >>> round(r.scale, 4), round(r.shift, 4)
    (0.2, 0.05)
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "KNOWN_DEPTH_SUFFIXES",
    "MIN_ROBUST_POINTS",
    "AlignResult",
    "AlignmentError",
    "KnownDepthError",
    "align_to_metric",
    "read_known_depth",
    "robust_scale_shift",
]

log = logging.getLogger(__name__)

#: Below this many known points no outlier rejection is attempted (RANSAC with 4 points cannot out-vote one
#: bad point reliably), and the result carries ``robust=False``.
MIN_ROBUST_POINTS = 5

_IMAGE_SUFFIXES = {".png", ".tif", ".tiff"}
_TABLE_SUFFIXES = {".csv", ".txt"}
#: File suffixes :func:`read_known_depth` accepts (lower case).
KNOWN_DEPTH_SUFFIXES: frozenset[str] = frozenset(_IMAGE_SUFFIXES | _TABLE_SUFFIXES | {".npy"})
# Aspect ratios of a known-depth image and the image may differ by this much (rounding of odd sizes).
_ASPECT_RTOL = 0.02


class KnownDepthError(ValueError):
    """A known-depth file cannot be used (unreadable, wrong kind, no valid value); the message says why."""


class AlignmentError(ValueError):
    """The known depths cannot determine a metric alignment (too few points, degenerate, negative scale)."""


@dataclass
class AlignResult:
    """Outcome of :func:`align_to_metric`.

    Attributes:
        depth_m: float32 ``(H, W)`` metres, ``1 / (scale * disparity + shift)``; ``NaN`` where the denominator
            is ``<= 0`` (at or beyond infinity) or beyond ``max_depth_m``.
        scale, shift: the fitted ``1 / Z = scale * disparity + shift`` (inverse metres per disparity unit,
            inverse metres).
        n_points: valid known points used (known depth > 0 and finite, disparity finite).
        n_inliers: points the final fit explains within ``inlier_rtol`` (all points when not robust).
        inlier_ratio: ``n_inliers / n_points``.
        rmse_m: root-mean-square depth error over the inliers, metres.
        abs_rel: mean ``|depth - known| / known`` over the inliers.
        abs_rel_all: the same over all points, outliers included (a NaN prediction counts as error 1).
        robust: whether outliers could be rejected (``n_points >= MIN_ROBUST_POINTS``).
        note: human-readable remark about the fit (empty when nothing to say).
    """

    depth_m: np.ndarray
    scale: float
    shift: float
    n_points: int
    n_inliers: int
    inlier_ratio: float
    rmse_m: float
    abs_rel: float
    abs_rel_all: float
    robust: bool
    note: str = ""

    def to_dict(self) -> dict[str, float | int | bool | str]:
        """The fit parameters and quality as a JSON-ready dict (everything but ``depth_m``)."""
        return {
            "scale": self.scale,
            "shift": self.shift,
            "n_points": self.n_points,
            "n_inliers": self.n_inliers,
            "inlier_ratio": self.inlier_ratio,
            "rmse_m": self.rmse_m,
            "abs_rel": self.abs_rel,
            "abs_rel_all": self.abs_rel_all,
            "robust": self.robust,
            "note": self.note,
        }

    def summary(self) -> str:
        """One line for logs and the CLI, e.g. ``1/Z = 0.2*d + 0.05; 120/150 inliers (80%); rmse 0.12 m ...``."""
        text = (
            f"1/Z = {self.scale:.6g}*d {'+' if self.shift >= 0 else '-'} {abs(self.shift):.6g}; "
            f"{self.n_inliers}/{self.n_points} inliers ({100 * self.inlier_ratio:.0f}%); "
            f"rmse {self.rmse_m:.4g} m, abs_rel {self.abs_rel:.4g} (all points {self.abs_rel_all:.4g})"
        )
        return f"{text}; {self.note}" if self.note else text


# --------------------------------------------------------------------------------------------------------
# Reading known depths


def read_known_depth(
    path: str | Path, shape: tuple[int, int], *, png_unit_m: float = 0.001
) -> tuple[np.ndarray, np.ndarray]:
    """Read known depths for an image of ``shape = (H, W)``.

    Args:
        path: a depth image (``.png``/``.tif``: integer counts of ``png_unit_m`` metres, 0 = invalid; float
            TIFF: metres), a ``.npy`` float array in metres (NaN/inf/<=0 invalid), or a ``.csv``/``.txt`` list
            of ``row,col,depth_m`` lines (see the module docstring).
        shape: ``(H, W)`` of the image (and prediction) being aligned.
        png_unit_m: metres per count of integer depth images (0.001 = millimetres; KITTI: 1/256; VKITTI: 0.01).

    Returns:
        ``(depth_m float32 (H, W), mask bool (H, W))``; ``depth_m`` is 0 where ``mask`` is false.

    Raises:
        KnownDepthError: unreadable or unsupported file, bad CSV line, coordinates outside the image, aspect
            ratio mismatch, or no valid known depth at all.
    """
    path = Path(path)
    height, width = _check_shape(shape)
    if not path.is_file():
        raise KnownDepthError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in _TABLE_SUFFIXES:
        depth_m, mask = _read_table(path, height, width)
    else:
        if suffix == ".npy":
            src = _read_npy(path)
        elif suffix in _IMAGE_SUFFIXES:
            src = _read_depth_image(path, png_unit_m)
        else:
            raise KnownDepthError(
                f"{path}: expected a .png/.tif depth image, a .npy array or a .csv/.txt point list, "
                f"got {suffix or 'no suffix'!r}"
            )
        valid = np.isfinite(src) & (src > 0)
        if not valid.any():
            raise KnownDepthError(f"{path}: no valid known depth (every value is 0, negative or not finite)")
        depth_m, mask = _resize_nearest(np.where(valid, src, 0).astype(np.float32), valid, height, width, path)
    if not mask.any():
        raise KnownDepthError(f"{path}: no valid known depth")
    return depth_m, mask


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    if len(shape) != 2 or int(shape[0]) <= 0 or int(shape[1]) <= 0:
        raise ValueError(f"expected shape (H, W) with positive sizes, got {tuple(shape)}")
    return int(shape[0]), int(shape[1])


def _read_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise KnownDepthError(f"{path}: not a readable .npy file ({e})") from None
    arr = np.squeeze(arr)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise KnownDepthError(f"{path}: expected a numeric (H, W) array in metres, got {arr.dtype} {arr.shape}")
    return arr.astype(np.float32)


def _read_depth_image(path: Path, png_unit_m: float) -> np.ndarray:
    import cv2

    if not png_unit_m > 0:
        raise ValueError(f"expected png_unit_m > 0, got {png_unit_m}")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise KnownDepthError(f"{path}: not a readable depth image")
    if img.ndim == 3:
        if img.shape[2] == 1 or (np.all(img[..., 0] == img[..., 1]) and np.all(img[..., 1] == img[..., 2])):
            img = img[..., 0]
        else:
            raise KnownDepthError(f"{path}: expected a single-channel depth image, got {img.shape[2]} channels")
    if np.issubdtype(img.dtype, np.floating):
        return img.astype(np.float32)  # float images hold metres
    if img.dtype == np.uint8:
        log.warning("%s: 8-bit depth image; reading counts of %g m (prefer 16-bit)", path, png_unit_m)
    return (img.astype(np.float64) * png_unit_m).astype(np.float32)


_SPLIT = re.compile(r"[,;\s]+")


def _read_table(path: Path, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise KnownDepthError(f"{path}: not a readable text file ({e})") from None
    rows: list[tuple[int, int, float]] = []
    seen_data = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f for f in _SPLIT.split(line) if f]
        try:
            numbers = [float(f) for f in fields]
        except ValueError:
            if not seen_data:  # a header line such as "row,col,depth_m"
                seen_data = True
                continue
            raise KnownDepthError(f"{path}:{lineno}: expected 'row,col,depth_m' numbers, got {raw.strip()!r}") from None
        if len(numbers) != 3:
            raise KnownDepthError(f"{path}:{lineno}: expected 3 fields 'row,col,depth_m', got {raw.strip()!r}")
        r, c, z = numbers
        seen_data = True
        ri, ci = round(r), round(c)
        if not (0 <= ri < height and 0 <= ci < width):
            raise KnownDepthError(
                f"{path}:{lineno}: pixel (row {r:g}, col {c:g}) is outside the {height}x{width} image"
            )
        if not (np.isfinite(z) and z > 0):
            log.warning("%s:%d: ignoring non-positive or non-finite depth %r", path, lineno, z)
            continue
        rows.append((ri, ci, z))
    if not rows:
        raise KnownDepthError(f"{path}: no valid known depth (expected lines 'row,col,depth_m' with depth > 0)")
    depth_sum = np.zeros((height, width), np.float64)
    count = np.zeros((height, width), np.int64)
    r_idx, c_idx, z_val = (np.array(v) for v in zip(*rows, strict=True))
    np.add.at(depth_sum, (r_idx, c_idx), z_val)
    np.add.at(count, (r_idx, c_idx), 1)
    mask = count > 0
    depth_m = np.zeros((height, width), np.float32)
    depth_m[mask] = (depth_sum[mask] / count[mask]).astype(np.float32)
    return depth_m, mask


def _resize_nearest(
    depth_m: np.ndarray, valid: np.ndarray, height: int, width: int, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    h, w = depth_m.shape
    if (h, w) == (height, width):
        return depth_m, valid
    if abs((w / h) / (width / height) - 1.0) > _ASPECT_RTOL:
        raise KnownDepthError(
            f"{path}: expected a depth image with the image's aspect ratio ({width}x{height}), got {w}x{h}"
        )
    log.info("%s: known depth %dx%d placed on the %dx%d image by nearest neighbour", path, w, h, width, height)
    if height >= h and width >= w:
        import cv2

        up = cv2.resize(depth_m, (width, height), interpolation=cv2.INTER_NEAREST)
        up_valid = cv2.resize(valid.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
        return np.where(up_valid, up, 0).astype(np.float32), up_valid
    rows, cols = np.nonzero(valid)
    tr = np.clip(np.rint((rows + 0.5) * height / h - 0.5), 0, height - 1).astype(np.int64)
    tc = np.clip(np.rint((cols + 0.5) * width / w - 0.5), 0, width - 1).astype(np.int64)
    depth_sum = np.zeros((height, width), np.float64)
    count = np.zeros((height, width), np.int64)
    np.add.at(depth_sum, (tr, tc), depth_m[rows, cols])
    np.add.at(count, (tr, tc), 1)
    mask = count > 0
    out = np.zeros((height, width), np.float32)
    out[mask] = (depth_sum[mask] / count[mask]).astype(np.float32)
    return out, mask


# --------------------------------------------------------------------------------------------------------
# Fitting


def _lstsq_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Unweighted least-squares ``y ~= s * x + t`` (``alignment.fit_scale_shift``, the project's one LS fit,
    in float64); raises ``AlignmentError`` when all ``x`` are equal instead of returning ``s = 0``."""
    import torch

    from .least_squares import fit_scale_shift

    x = np.asarray(x, np.float64)
    if x.size < 2 or float(np.var(x)) <= 1e-24 * float(np.mean(x * x)):
        raise AlignmentError(
            f"expected known points with different predicted disparities, got {x.size} point(s) "
            "whose disparities are all equal"
        )
    s, t = fit_scale_shift(torch.from_numpy(x[None, :]), torch.from_numpy(np.asarray(y, np.float64)[None, :]))
    return float(s), float(t)


def robust_scale_shift(
    x: np.ndarray,
    y: np.ndarray,
    tol: np.ndarray | float,
    *,
    hypotheses: int = 256,
    max_score_points: int = 20000,
    refit_iterations: int = 5,
    positive_scale: bool = True,
    seed: int = 0,
) -> tuple[float, float, np.ndarray]:
    """RANSAC over point pairs, then least-squares refits on the inliers: ``y ~= s * x + t``.

    Args:
        x, y: 1-D arrays of equal length ``N >= 2`` (finite).
        tol: inlier tolerance on ``|s * x + t - y|``: a scalar or a per-point array of length ``N``.
        hypotheses: number of random pairs tried (all pairs when there are fewer).
        max_score_points: hypotheses are scored on a random subset of at most this many points.
        refit_iterations: maximum least-squares refit / inlier-update rounds.
        positive_scale: reject hypotheses with ``s <= 0``.
        seed: RNG seed (the fit is deterministic for a given seed).

    Returns:
        ``(s, t, inliers bool (N,))``.

    Raises:
        AlignmentError: fewer than 2 points, all ``x`` equal, or no hypothesis with a positive scale.
    """
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    n = x.size
    if y.size != n:
        raise ValueError(f"expected x and y of the same length, got {x.size} and {y.size}")
    if n < 2:
        raise AlignmentError(f"expected at least 2 points to fit a scale and a shift, got {n}")
    tol_arr = np.broadcast_to(np.asarray(tol, np.float64), (n,))
    rng = np.random.default_rng(seed)
    s_h, t_h = _pair_hypotheses(x, y, hypotheses, positive_scale, rng)
    s, t = _best_hypothesis(x, y, tol_arr, s_h, t_h, max_score_points, rng)
    return _refit_on_inliers(x, y, tol_arr, s, t, refit_iterations, positive_scale)


def _pair_hypotheses(
    x: np.ndarray, y: np.ndarray, hypotheses: int, positive_scale: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate lines ``(s, t)`` through pairs of points (all pairs when there are at most ``hypotheses``)."""
    n = x.size
    n_pairs = n * (n - 1) // 2
    if n_pairs <= hypotheses:
        i, j = np.triu_indices(n, k=1)
    else:
        i = rng.integers(0, n, hypotheses)
        j = rng.integers(0, n, hypotheses)
    dx = x[i] - x[j]
    ok = np.abs(dx) > 1e-12 * np.maximum(np.abs(x[i]), 1.0)
    i, j, dx = i[ok], j[ok], dx[ok]
    s_h = (y[i] - y[j]) / dx
    t_h = y[i] - s_h * x[i]
    if positive_scale:
        keep = s_h > 0
        s_h, t_h = s_h[keep], t_h[keep]
    if s_h.size == 0:
        if np.ptp(x) == 0:
            raise AlignmentError(f"expected known points with different predicted disparities, got {n} equal ones")
        raise AlignmentError(
            "no pair of known points gives a positive scale: the prediction is anti-correlated with the known "
            "inverse depths (is it a depth map rather than a disparity map?)"
        )
    return s_h, t_h


def _best_hypothesis(
    x: np.ndarray,
    y: np.ndarray,
    tol: np.ndarray,
    s_h: np.ndarray,
    t_h: np.ndarray,
    max_score_points: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """The candidate with the most inliers (ties: the smallest median residual), scored on a point subset."""
    n = x.size
    score_idx = rng.choice(n, max_score_points, replace=False) if n > max_score_points else np.arange(n)
    xs, ys, ts = x[score_idx], y[score_idx], tol[score_idx]
    best = (-1, np.inf, 0)  # (inlier count, median abs residual, hypothesis index)
    chunk = max(1, 4_000_000 // max(xs.size, 1))
    for start in range(0, s_h.size, chunk):
        s_c, t_c = s_h[start : start + chunk, None], t_h[start : start + chunk, None]
        res = np.abs(s_c * xs[None, :] + t_c - ys[None, :])
        counts = (res <= ts[None, :]).sum(axis=1)
        med = np.median(res, axis=1)
        for k in np.flatnonzero(counts == counts.max()):
            cand = (int(counts[k]), float(med[k]), start + int(k))
            if cand[0] > best[0] or (cand[0] == best[0] and cand[1] < best[1]):
                best = cand
    return float(s_h[best[2]]), float(t_h[best[2]])


def _refit_on_inliers(
    x: np.ndarray, y: np.ndarray, tol: np.ndarray, s: float, t: float, iterations: int, positive_scale: bool
) -> tuple[float, float, np.ndarray]:
    """Least-squares refits on the inliers of ``(s, t)`` until the inlier set stops changing."""
    inliers = np.abs(s * x + t - y) <= tol
    for _ in range(iterations):
        if inliers.sum() < 2:
            break
        try:
            s_new, t_new = _lstsq_line(x[inliers], y[inliers])
        except AlignmentError:
            break
        if positive_scale and s_new <= 0:
            break
        s, t = s_new, t_new
        new_inliers = np.abs(s * x + t - y) <= tol
        if np.array_equal(new_inliers, inliers):
            break
        inliers = new_inliers
    return s, t, inliers


def align_to_metric(
    disparity: np.ndarray,
    known_depth_m: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    inlier_rtol: float = 0.1,
    max_depth_m: float | None = None,
    seed: int = 0,
) -> AlignResult:
    """Fit ``1 / Z = scale * disparity + shift`` to known depths robustly and return metric depth.

    Args:
        disparity: float ``(H, W)`` relative prediction (larger = closer). For a metric prediction pass
            ``1 / depth`` to re-align it.
        known_depth_m: float ``(H, W)`` known depths in metres (read with :func:`read_known_depth`).
        mask: bool ``(H, W)``, where ``known_depth_m`` is valid (default: where it is finite and > 0). Points
            with a non-finite disparity or a non-positive/non-finite known depth are ignored either way.
        inlier_rtol: relative depth tolerance of an inlier (0.1 = 10 %), see the module docstring.
        max_depth_m: optional cap; predicted depths beyond it become ``NaN``.
        seed: RANSAC seed.

    Returns:
        :class:`AlignResult` (metric ``depth_m`` float32 ``(H, W)`` with NaN where undefined, plus fit quality).

    Raises:
        ValueError: shapes differ or are not 2-D.
        AlignmentError: fewer than 2 usable points, all at the same disparity, or an anti-correlated prediction.
    """
    disparity, known_depth_m, mask = _checked_inputs(disparity, known_depth_m, mask, inlier_rtol)
    d_all = disparity.astype(np.float64)
    z_all = known_depth_m.astype(np.float64)
    with np.errstate(invalid="ignore"):
        usable = mask.astype(bool) & np.isfinite(d_all) & np.isfinite(z_all) & (z_all > 0)
    n = int(usable.sum())
    if n < 2:
        raise AlignmentError(
            f"expected at least 2 known depths (> 0, finite, at pixels with a finite prediction), got {n}"
        )
    d, z = d_all[usable], z_all[usable]
    scale, shift, inliers, robust, note = _fit_inverse_depth(d, 1.0 / z, inlier_rtol, seed)

    denom = scale * d_all + shift
    with np.errstate(divide="ignore", invalid="ignore"):
        depth_m = np.where(denom > 0, 1.0 / denom, np.nan)
    if max_depth_m is not None:
        depth_m[depth_m > max_depth_m] = np.nan
    depth_m = depth_m.astype(np.float32)

    rmse, abs_rel, abs_rel_all = _fit_errors(depth_m.astype(np.float64)[usable], z, inliers)
    n_in = int(inliers.sum())
    result = AlignResult(
        depth_m=depth_m,
        scale=float(scale),
        shift=float(shift),
        n_points=n,
        n_inliers=n_in,
        inlier_ratio=n_in / n,
        rmse_m=rmse,
        abs_rel=abs_rel,
        abs_rel_all=abs_rel_all,
        robust=robust,
        note=note,
    )
    log.info("metric alignment: %s", result.summary())
    return result


def _checked_inputs(
    disparity: np.ndarray, known_depth_m: np.ndarray, mask: np.ndarray | None, inlier_rtol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(disparity, known_depth_m, mask)`` as arrays of one ``(H, W)`` shape (``mask`` all true by default)."""
    disparity = np.asarray(disparity)
    known_depth_m = np.asarray(known_depth_m)
    if disparity.ndim != 2:
        raise ValueError(f"expected disparity of shape (H, W), got {disparity.shape}")
    if known_depth_m.shape != disparity.shape:
        raise ValueError(
            f"expected known_depth_m of shape {disparity.shape} (same as disparity), got {known_depth_m.shape}"
        )
    if mask is None:
        mask = np.ones(disparity.shape, bool)
    mask = np.asarray(mask)
    if mask.shape != disparity.shape:
        raise ValueError(f"expected mask of shape {disparity.shape} (same as disparity), got {mask.shape}")
    if not inlier_rtol > 0:
        raise ValueError(f"expected inlier_rtol > 0, got {inlier_rtol}")
    return disparity, known_depth_m, mask


def _fit_inverse_depth(
    d: np.ndarray, inv_z: np.ndarray, inlier_rtol: float, seed: int
) -> tuple[float, float, np.ndarray, bool, str]:
    """``(scale, shift, inliers, robust, note)`` of ``inv_z ~= scale * d + shift`` (RANSAC when enough points)."""
    n = d.size
    robust = n >= MIN_ROBUST_POINTS
    if robust:
        # |s*d + t - 1/Z| <= rtol / Z  <=>  the depth is right to ~rtol (first order).
        scale, shift, inliers = robust_scale_shift(d, inv_z, inlier_rtol * inv_z, seed=seed)
        note = ""
        if inliers.sum() < 0.5 * n:
            note = f"fewer than half of the known points agree with the fit (tolerance {inlier_rtol:.0%})"
    else:
        scale, shift = _lstsq_line(d, inv_z)
        inliers = np.ones(n, bool)
        note = (
            f"only {n} known point(s): exact fit through them, no outlier rejection possible"
            if n == 2
            else f"only {n} known points: plain least squares, no outlier rejection (needs >= {MIN_ROBUST_POINTS})"
        )
    if not scale > 0:
        raise AlignmentError(
            f"fitted scale {scale:.6g} is not positive: the prediction is anti-correlated with the known "
            "inverse depths (is it a depth map rather than a disparity map?)"
        )
    return scale, shift, inliers, robust, note


def _fit_errors(pred: np.ndarray, z: np.ndarray, inliers: np.ndarray) -> tuple[float, float, float]:
    """``(rmse_m, abs_rel, abs_rel_all)`` of predicted against known depths (a NaN prediction: error 1)."""
    err = np.abs(pred - z)
    rel = np.where(np.isfinite(err), err / z, 1.0)
    in_err = err[inliers]
    finite_in = np.isfinite(in_err)
    rmse = float(np.sqrt(np.mean(in_err[finite_in] ** 2))) if finite_in.any() else float("nan")
    abs_rel = float(np.mean(rel[inliers])) if inliers.any() else float("nan")
    return rmse, abs_rel, float(np.mean(rel))
