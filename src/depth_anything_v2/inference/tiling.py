"""High-resolution tiled inference: the global structure of one pass, the detail of tiles, no seams.

The network sees 518 px on the short side, so a 24 MP photo is predicted at ~0.3 MP and thin structures vanish;
running the network at a larger size changes its behaviour. This module keeps the network at its working size
and runs it more often, without training anything:

1. **Global pass**: the image at the working size, exactly as :meth:`DepthPredictor.predict` (``D_0``, upsampled
   to the full resolution).
2. **Levels**: level ``k`` (1, 2, ...) covers the image with overlapping square tiles of side ``c_k`` input pixels,
   each run at the working size (518 x 518), so level ``k`` sees the image at ``2**k`` times the global
   resolution when ``c_k = short_side / 2**k`` (the default). Levels are processed coarse to fine; level ``k`` is
   merged onto ``D_{k-1}`` (the global pass for ``k = 1``) and gives ``D_k``.
3. **Per-tile alignment** to ``D_{k-1}`` cropped to the tile: scale and shift in disparity for relative models,
   scale in depth for metric ones, fitted on both maps area-resampled to at most 128 x 128 by iteratively
   reweighted least squares (Tukey biweight, c = 4.685 x 1.4826 x MAD of the residuals, 3 reweightings): a
   region the tile sees differently (an object cut by the tile edge) does not pull the fit. Least squares is well
   conditioned by construction (the aligned tile's variance never exceeds the target's; a constant tile gets
   scale 0). A tile falls back to the target itself (``D_{k-1}``, no detail added) where its fit means nothing:
   on *flat* tiles (sky, a wall: the target's standard deviation below ``flat_tolerance`` x the 1-99 % spread of
   ``D_{k-1}``), where the tile disagrees with the target (weighted R^2 of the fit below ``min_r2``), or for a
   negative scale. The switch is soft: the tile contributes ``alpha x aligned + (1 - alpha) x target``, with
   ``alpha`` rising linearly from 0 to 1 between one and two times each threshold (the smaller of the two).
4. **Blending**: separable raised-cosine weights that fall from 1 to 0 across each overlap with a neighbour (not
   at the image border), normalised per axis so that they sum to exactly 1 everywhere: ``B_k`` is a smooth
   partition-of-unity blend of the aligned tiles, and a difference between two tiles' fits becomes a ramp as wide
   as the overlap, never a step.
5. **Frequency split**: ``D_k = B_k + up(down(D_{k-1}) - down(B_k))``, where ``down`` is an area resampling to a
   grid of cells twice the size of ``D_{k-1}``'s prediction pixels (``2 x short_side / 518`` input pixels for the
   global pass, ``2 x c_{k-1} / 518`` for tiles) and ``up`` is bilinear back to the full resolution. The low
   frequencies (the global structure and range) come from ``D_{k-1}``, the high ones (thin structures, sharp
   depth edges) from the tiles. The cut is an octave below ``D_{k-1}``'s Nyquist frequency because its top octave
   is what its bilinear upsampling blurs, and the finer tiles resolve it. Residual misfits between tiles are
   smooth ramps across the overlaps (a quarter of a tile: dozens of cells), so the split removes them too.

Output: float32 ``(H, W)`` at the input's full resolution, clipped to ``>= 0`` (and ``<= max_depth`` for
metric models), with ``DepthResult.meta["tiling"]`` recording what ran: the ``Tiling`` fields, ``input_size``
and ``plan``, one entry per level (tile side in input pixels, grid, tile count, and ``fallback_tiles``: tiles
that fell back to the target, fully or partly). Images whose plan has no level (short side below 2 x the
working size by default, or a tile as large as the short side) return the untiled prediction unchanged.

Levels (``Tiling.levels``) when not given: ``floor(log2(short_side / input_size))``, at most 2, so tiles are
never smaller than the working size (no upsampled tiles) and a 12 MP photo (3000 px short side) gets two levels
of 1500 and 750 px tiles (12 + 35 tiles for 4000 x 3000 with the default overlap). ``tile_size`` fixes the
finest level's tile side instead; coarser levels double it while it stays below the short side.

Cost and memory: the network runs once plus once per tile, tiles in batches of ``batch_size`` through the
predictor's own :meth:`~DepthPredictor.predict_iter` (so any backend or precision the predictor has works). Tiles
are streamed: each is cropped, predicted, aligned and accumulated in place into one full-resolution float32 map,
so the memory is the image plus two full-resolution float32 maps plus one batch of tiles.

Example::

    >>> predictor = DepthPredictor.from_pretrained("vits")            # doctest: +SKIP
    >>> result = predictor.predict("big.jpg", tiling=True)            # doctest: +SKIP
    >>> result.meta["tiling"]["plan"]                                 # doctest: +SKIP
    [{'tile_px': 1500, 'grid': [3, 4], 'tiles': 12, 'fallback_tiles': 0}, ...]
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from ..align.least_squares import fit_scale, fit_scale_shift
from .transforms import check_image

if TYPE_CHECKING:
    from .predictor import DepthPredictor, DepthResult

logger = logging.getLogger(__name__)

__all__ = ["TileLevel", "Tiling", "plan_levels", "predict_tiled", "resolve_tiling"]

#: Levels chosen automatically are at most this many (tiles grow as 4**k: 2 levels = ~50 tiles for 12 MP).
MAX_AUTO_LEVELS = 2
#: Smallest tile side, input pixels.
MIN_TILE_SIZE = 32
_FIT_SIZE = 128  # alignment fits run on both maps area-resampled to at most this square
_TUKEY_C = 4.685  # Tukey biweight constant: 95 % efficiency on Gaussian residuals
_REWEIGHTINGS = 3
_SPLIT_CELLS = 2  # D_{k-1} keeps frequencies up to half its own Nyquist: bilinear upsampling blurs the top octave


@dataclass(frozen=True)
class Tiling:
    """How to tile one image (see the module docstring for the algorithm).

    Attributes:
        tile_size: side of the finest level's square tiles in *input-image* pixels; ``None`` (default): the short
            side / ``2**levels``.
        overlap: minimum fraction of a tile side shared with each neighbour, in ``(0, 0.5]`` (default 0.25).
            Tiles are spread evenly, so the actual overlap is this or more.
        levels: number of tile levels; ``None`` (default): ``floor(log2(short_side / input_size))``, at most
            ``MAX_AUTO_LEVELS`` (2). ``0`` runs the global pass only.
        flat_tolerance: a tile whose target's standard deviation is below this fraction of the image's 1-99 %
            spread is flat and falls back to the target (default 0.01; soft up to twice that).
        min_r2: a tile whose robust fit explains less than this fraction of the target's variance (weighted R^2)
            disagrees with the global prediction and falls back to it (default 0.25; soft up to twice that).
        progress: show a tqdm bar over the tiles of one image (``None``: only on a terminal). Not recorded.
    """

    tile_size: int | None = None
    overlap: float = 0.25
    levels: int | None = None
    flat_tolerance: float = 0.01
    min_r2: float = 0.25
    progress: bool | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.tile_size is not None and (not isinstance(self.tile_size, int) or self.tile_size < MIN_TILE_SIZE):
            raise ValueError(f"expected tile_size an integer >= {MIN_TILE_SIZE} pixels or None, got {self.tile_size!r}")
        if not 0 < self.overlap <= 0.5:
            raise ValueError(f"expected overlap in (0, 0.5], got {self.overlap!r}")
        if self.levels is not None and (not isinstance(self.levels, int) or self.levels < 0):
            raise ValueError(f"expected levels a non-negative integer or None, got {self.levels!r}")
        if not self.flat_tolerance >= 0:
            raise ValueError(f"expected flat_tolerance >= 0, got {self.flat_tolerance!r}")
        if not 0 <= self.min_r2 < 1:
            raise ValueError(f"expected min_r2 in [0, 1), got {self.min_r2!r}")


@dataclass(frozen=True)
class TileLevel:
    """One level of the plan: square tiles of ``side`` input pixels whose top-left corners are ``(y, x)`` for
    every ``y`` in ``ys`` and ``x`` in ``xs`` (row-major order: the order tiles go through the network)."""

    side: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def boxes(self) -> list[tuple[int, int, int, int]]:
        """``(y0, x0, y1, x1)`` of every tile, row-major."""
        return [(y, x, y + self.side, x + self.side) for y in self.ys for x in self.xs]


def resolve_tiling(tiling: Tiling | bool | None) -> Tiling | None:
    """``None``/``False`` -> ``None`` (no tiling), ``True`` -> ``Tiling()``, a ``Tiling`` -> itself."""
    if tiling is None or tiling is False:
        return None
    if tiling is True:
        return Tiling()
    if isinstance(tiling, Tiling):
        return tiling
    raise TypeError(f"expected tiling None, a bool or a Tiling, got {type(tiling).__name__}")


def _starts(length: int, side: int, overlap: float) -> tuple[int, ...]:
    """Evenly spread starts of tiles of ``side`` covering ``[0, length)`` with at least ``overlap`` x side shared."""
    if side >= length:
        return (0,)
    n = math.ceil((length - side) / (side * (1.0 - overlap))) + 1
    return tuple(round(i * (length - side) / (n - 1)) for i in range(n))


def plan_levels(height: int, width: int, tiling: Tiling, input_size: int = 518) -> list[TileLevel]:
    """The tile levels, coarse to fine, for an image of ``height x width`` (empty: no tiling needed).

    Levels whose tiles would cover the whole short side are dropped (one such tile is the global pass).
    """
    short = min(height, width)
    if tiling.tile_size is None:
        n = tiling.levels
        if n is None:
            n = min(MAX_AUTO_LEVELS, max(0, math.floor(math.log2(short / input_size))))
        sides = [math.ceil(short / 2**k) for k in range(1, n + 1)]
        if sides and sides[-1] < MIN_TILE_SIZE:
            raise ValueError(
                f"expected tiles of at least {MIN_TILE_SIZE} px, got {sides[-1]} px for {n} levels on a "
                f"{height} x {width} image; use fewer levels"
            )
    else:
        n = tiling.levels
        if n is None:
            n = min(MAX_AUTO_LEVELS, sum(1 for j in range(32) if tiling.tile_size * 2**j < short))
        sides = [tiling.tile_size * 2**j for j in reversed(range(n))]
    return [
        TileLevel(side, _starts(height, side, tiling.overlap), _starts(width, side, tiling.overlap))
        for side in sides
        if side < short
    ]


def _axis_weights(length: int, side: int, starts: tuple[int, ...]) -> list[np.ndarray]:
    """Per tile, float32 ``(side,)`` blending weights along one axis; over the axis they sum to exactly 1.

    Raised cosine ``sin(pi/2 * d / ramp)**2`` of the distance ``d`` to the tile's inner edges (image borders do
    not taper), ``ramp`` = the smallest overlap between neighbours, then normalised by the sum over tiles.
    """
    if len(starts) == 1:
        return [np.ones(min(side, length), np.float32)]
    ramp = min(a + side - b for a, b in itertools.pairwise(starts))
    centres = np.arange(side) + 0.5
    raw, total = [], np.zeros(length)
    for a in starts:
        left = centres if a > 0 else np.full(side, np.inf)
        right = side - centres if a + side < length else np.full(side, np.inf)
        w = np.sin(0.5 * np.pi * np.minimum(np.minimum(left, right) / ramp, 1.0)) ** 2
        raw.append(w)
        total[a : a + side] += w
    return [(w / total[a : a + side]).astype(np.float32) for w, a in zip(raw, starts, strict=True)]


def _robust_fit(pred: np.ndarray, target: np.ndarray, metric: bool) -> tuple[float, float, float]:
    """IRLS (Tukey biweight) ``scale, shift`` with ``scale * pred + shift ~ target`` (``shift = 0`` if metric),
    and the weighted coefficient of determination ``r2`` of the final fit (1: the tile explains the target)."""
    p = torch.from_numpy(pred).double()
    q = torch.from_numpy(target).double()
    w = torch.ones_like(p)
    floor = 1e-6 * float(q.abs().max()) + 1e-12  # a perfect fit has MAD 0: keep the weights finite
    shift = torch.zeros((), dtype=torch.float64)
    for it in range(_REWEIGHTINGS + 1):
        if metric:
            scale = fit_scale(p, q, w)
        else:
            scale, shift = fit_scale_shift(p, q, w)
        r = (scale * p + shift - q).abs()
        if it == _REWEIGHTINGS:
            break
        sigma = max(1.4826 * float(r.median()), floor)
        u = r / (_TUKEY_C * sigma)
        w_next = torch.where(u < 1, (1 - u * u) ** 2, torch.zeros_like(u))
        if float((w_next > 0).double().mean()) < 0.5:  # the model disagrees with most of the tile: keep the fit
            break
        w = w_next
    qc = q - (w * q).sum() / w.sum()
    r2 = 1.0 - float((w * r * r).sum()) / max(float((w * qc * qc).sum()), 1e-300)
    return float(scale), float(shift), r2


def _resample(a: np.ndarray, size_hw: tuple[int, int], interpolation: int) -> np.ndarray:
    return cv2.resize(a, (size_hw[1], size_hw[0]), interpolation=interpolation)


class _Level:
    """Accumulates one level's aligned, blended tiles in place (``blend``) and applies the frequency split."""

    def __init__(self, level: TileLevel, prev: np.ndarray, metric: bool, tiling: Tiling) -> None:
        height, width = prev.shape
        self.level, self.prev, self.metric = level, prev, metric
        self.wy = _axis_weights(height, level.side, level.ys)
        self.wx = _axis_weights(width, level.side, level.xs)
        preview = _resample(prev, _grid(prev.shape, max(prev.shape) / 256), cv2.INTER_AREA)
        lo, hi = np.percentile(preview, [1, 99])
        self.flat_std, self.min_r2 = tiling.flat_tolerance * float(hi - lo), tiling.min_r2
        self.blend = np.zeros_like(prev)
        self.fallback_tiles = 0

    def add(self, index: int, pred: np.ndarray) -> None:
        i, j = divmod(index, len(self.level.xs))
        y, x, side = self.level.ys[i], self.level.xs[j], self.level.side
        target = self.prev[y : y + side, x : x + side]
        fit = (min(side, _FIT_SIZE),) * 2
        q = _resample(target, fit, cv2.INTER_AREA)
        scale, shift, r2 = _robust_fit(_resample(pred, fit, cv2.INTER_AREA), q, self.metric)
        alpha = 0.0 if scale <= 0 else min(_soft_gate(float(q.std()), self.flat_std), _soft_gate(r2, self.min_r2))
        self.fallback_tiles += alpha < 1.0
        tile = target if alpha == 0 else alpha * (scale * pred + shift) + (1.0 - alpha) * target
        self.blend[y : y + side, x : x + side] += self.wy[i][:, None] * self.wx[j][None, :] * tile

    def merge(self, cell_px: float) -> np.ndarray:
        """``D_k = B_k + up(down(D_{k-1}) - down(B_k))`` on the grid of ``cell_px`` input pixels per cell."""
        grid = _grid(self.prev.shape, _SPLIT_CELLS * cell_px)
        low = _resample(self.prev, grid, cv2.INTER_AREA) - _resample(self.blend, grid, cv2.INTER_AREA)
        self.prev = None  # let D_{k-1} go before the full-resolution upsampled correction is allocated
        self.blend += _resample(low, self.blend.shape, cv2.INTER_LINEAR)
        return self.blend


def _soft_gate(value: float, threshold: float) -> float:
    """0 at or below ``threshold``, rising linearly to 1 at twice it (1 above 0 for a zero threshold)."""
    if value <= threshold:
        return 0.0
    return 1.0 if threshold <= 0 else min(1.0, value / threshold - 1.0)


def _grid(shape: tuple[int, int], cell_px: float) -> tuple[int, int]:
    return max(1, round(shape[0] / cell_px)), max(1, round(shape[1] / cell_px))


def predict_tiled(
    predictor: DepthPredictor,
    image_rgb: np.ndarray,
    tiling: Tiling | None = None,
    *,
    batch_size: int = 1,
    source: str | None = None,
) -> DepthResult:
    """Tiled prediction of one RGB uint8 ``(H, W, 3)`` image (see the module docstring); float32 ``(H, W)`` out.

    Tiles go through ``predictor.predict_iter`` in batches of ``batch_size``.
    """
    tiling = tiling or Tiling()
    check_image(image_rgb)
    height, width = image_rgb.shape[:2]
    levels = plan_levels(height, width, tiling, predictor.input_size)
    _, result = next(predictor.predict_iter([(None, image_rgb)]))
    record = {k: v for k, v in asdict(tiling).items() if k != "progress"}
    record.update(input_size=predictor.input_size, plan=[])
    result.source = source
    result.meta["tiling"] = record
    if not levels:
        return result
    depth, result.depth = result.depth, None  # each level holds only the previous one: no extra full-size map

    from tqdm.auto import tqdm

    disable = None if tiling.progress is None else not tiling.progress
    bar = tqdm(total=sum(len(lv.boxes) for lv in levels), desc="tiles", unit="tile", disable=disable, leave=False)
    cell_px = min(height, width) / predictor.input_size
    try:
        for level in levels:
            acc = _Level(level, depth, result.is_metric, tiling)
            del depth
            crops = ((k, image_rgb[y0:y1, x0:x1]) for k, (y0, x0, y1, x1) in enumerate(level.boxes))
            for k, tile in predictor.predict_iter(crops, batch_size=batch_size):
                acc.add(k, tile.depth)
                bar.update()
            depth = acc.merge(cell_px)
            cell_px = level.side / predictor.input_size
            grid, tiles, fallback = [len(level.ys), len(level.xs)], len(level.boxes), int(acc.fallback_tiles)
            record["plan"].append({"tile_px": level.side, "grid": grid, "tiles": tiles, "fallback_tiles": fallback})
            logger.debug("tiling level %s: %d tiles, %d fell back", level.side, len(level.boxes), acc.fallback_tiles)
    finally:
        bar.close()
    np.clip(depth, 0.0, result.max_depth if result.is_metric else None, out=depth)
    result.depth = depth
    return result
