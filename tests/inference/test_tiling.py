"""Tiled high-resolution inference (``inference.tiling``).

The merge is model-independent, so most tests use stand-in models that return known fields. A stand-in learns
which part of the image it is shown through a side channel the test controls: the list of boxes in the order the
tiling runs them (the global pass, then each level's tiles row-major, from :func:`plan_levels`); it fails if
called more often than that, and each test checks that every box was used. Images are small and the predictor's
working size is 112 px (instead of 518), so a 448 px image gets the same two levels a 12 MP photo gets.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from depth_anything_v2 import DepthPredictor, Tiling
from depth_anything_v2.data.synthetic import SceneConfig, render_scene
from depth_anything_v2.inference.tiling import plan_levels
from depth_anything_v2.inference.transforms import working_size

INPUT_SIZE = 112
Box = tuple[int, int, int, int]
EXAMPLES = Path(__file__).parents[2] / "src" / "depth_anything_v2" / "app" / "examples"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


class BoxStandIn(torch.nn.Module):
    """A stand-in network: for its n-th input it returns ``field(boxes[n], (h, w))``, ``(h, w)`` the input's
    size, ``boxes[n] = (y0, x0, y1, x1)`` the image region it was shown."""

    def __init__(self, boxes: list[Box], field: Callable, max_depth: float | None = None) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # the predictor reads device and dtype from it
        self.boxes, self.field, self.used, self.batches = boxes, field, 0, []
        self.is_metric, self.max_depth = max_depth is not None, max_depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        out = []
        for _ in range(x.shape[0]):
            out.append(torch.from_numpy(np.asarray(self.field(self.boxes[self.used], x.shape[-2:]), np.float32)))
            self.used += 1
        return torch.stack(out).to(x.dtype)


def tiled_with(field: Callable, shape: tuple[int, int], tiling: Tiling, max_depth=None, batch_size=4):
    """Run the tiling on a blank image with a :class:`BoxStandIn` returning ``field``; return the result, levels."""
    levels = plan_levels(*shape, tiling, INPUT_SIZE)
    boxes = [(0, 0, *shape)] + [b for lv in levels for b in lv.boxes]
    model = BoxStandIn(boxes, field, max_depth)
    result = DepthPredictor(model, input_size=INPUT_SIZE).predict(
        np.zeros((*shape, 3), np.uint8), tiling=tiling, batch_size=batch_size
    )
    assert model.used == len(boxes)
    # The global pass alone, then each level's tiles in batches of batch_size (a level's last batch may be short).
    assert model.batches == [1] + [min(batch_size, lv_n - i) for lv_n in (len(lv.boxes) for lv in levels)
                                   for i in range(0, lv_n, batch_size)]  # fmt: skip
    return result, levels


def sample_grid(box: Box, size_hw) -> tuple[np.ndarray, np.ndarray]:
    """Input-image coordinates of the stand-in's output pixels: the predictor resizes the output back to the box
    with ``align_corners=True``, so output pixel j sits at ``y0 + j * (box_h - 1) / (h - 1)``."""
    y0, x0, y1, x1 = box
    h, w = (int(s) for s in size_hw)
    return np.meshgrid(np.linspace(y0, y1 - 1, h), np.linspace(x0, x1 - 1, w), indexing="ij")


def smooth_field(y: np.ndarray, x: np.ndarray, shape) -> np.ndarray:
    """A smooth disparity field plus fine ripples (5-7 px periods) that only the finest tiles resolve (the
    global pass at 112 px sees the 448 px image with 4 px cells)."""
    h, w = shape
    ripples = 0.05 * np.sin(2 * np.pi * x / 5.3) * np.sin(2 * np.pi * y / 6.7)
    return 2.0 + np.sin(2.6 * np.pi * x / w) * np.cos(1.7 * np.pi * y / h) + 0.8 * x / w + ripples


def boundary_and_inner_steps(depth: np.ndarray, levels) -> tuple[float, float]:
    """Largest |difference of neighbours| across any tile edge, and anywhere else."""
    steps = []
    for axis, starts_of in ((1, lambda lv: lv.xs), (0, lambda lv: lv.ys)):
        d = np.abs(np.diff(depth, axis=axis))
        edges = np.zeros(d.shape[axis], bool)
        for lv in levels:
            for a in starts_of(lv):
                for e in (a - 1, a + lv.side - 1):  # the step from pixel e to e + 1 crosses the edge
                    if 0 <= e < len(edges):
                        edges[e] = True
        steps.append((d.compress(edges, axis).max(), d.compress(~edges, axis).max()))
    return max(s[0] for s in steps), max(s[1] for s in steps)


def test_no_seams_relative_tiles_under_random_scale_shift_and_noise(capsys):
    shape = (448, 600)
    rng = np.random.default_rng(0)
    truth = smooth_field(*np.mgrid[0 : shape[0], 0 : shape[1]], shape)
    spread = float(np.ptp(truth))

    def field(box, size_hw):  # the field under a random scale and shift per call (kept >= 0), plus noise
        f = rng.uniform(0.3, 3.0) * smooth_field(*sample_grid(box, size_hw), shape) + rng.uniform(0.0, 2.0)
        return f + rng.normal(0, 1e-3 * spread, f.shape)

    result, levels = tiled_with(field, shape, Tiling(progress=True))
    assert [lv.side for lv in levels] == [224, 112] and result.depth.shape == shape
    assert "| 0/47 [" in capsys.readouterr().err  # a progress bar over the 47 tiles
    assert [p["tiles"] for p in result.meta["tiling"]["plan"]] == [12, 35]
    # A relative prediction is defined up to scale and shift: compare after one global least-squares fit.
    a, b = np.polyfit(result.depth.ravel(), truth.ravel(), 1)
    error = np.abs(a * result.depth + b - truth).max()
    assert error <= 0.01 * spread, f"max error {error / spread:.2%} of the range"
    across, inner = boundary_and_inner_steps(result.depth, levels)
    assert across <= inner, f"largest step across tile edges {across:.4g} > inside tiles {inner:.4g}"


def test_no_seams_metric_tiles_under_random_scale():
    shape = (448, 600)
    rng = np.random.default_rng(1)
    truth = smooth_field(*np.mgrid[0 : shape[0], 0 : shape[1]], shape)
    calls = []

    def field(box, size_hw):  # the global pass (first call) is metric; every tile is off by a random scale
        scale = 1.0 if not calls else rng.uniform(0.5, 2.0)
        calls.append(box)
        return scale * smooth_field(*sample_grid(box, size_hw), shape)

    result, levels = tiled_with(field, shape, Tiling(), max_depth=20.0)
    assert result.kind == "metric"
    error = np.abs(result.depth - truth).max()
    assert error <= 0.01 * np.ptp(truth), f"max error {error / np.ptp(truth):.2%} of the range"
    across, inner = boundary_and_inner_steps(result.depth, levels)
    assert across <= inner


def gradient_correlation(pred: np.ndarray, truth: np.ndarray) -> float:
    """Edge accuracy: Pearson correlation of the gradient magnitudes (central differences) of two maps.

    Invariant to the scale and shift of either map (a relative prediction needs no alignment); 1 when every edge
    of the truth is in the prediction with proportional strength, near 0 when the prediction's edges are blurred
    away or misplaced.
    """
    g = [np.hypot(*np.gradient(m.astype(np.float64))).ravel() for m in (pred, truth)]
    return float(np.corrcoef(*g)[0, 1])


def perfect_518_model(disparity: np.ndarray):
    """What a perfect working-resolution model returns: the exact disparity of the region it is shown, area-
    downsampled to its input size (the predictor then upsamples it back, as it does for real models)."""

    def field(box, size_hw):
        y0, x0, y1, x1 = box
        return cv2.resize(disparity[y0:y1, x0:x1], (int(size_hw[1]), int(size_hw[0])), interpolation=cv2.INTER_AREA)

    return field


@pytest.mark.parametrize(
    ("seed", "objects"), [(7, True), (3, False)], ids=["outdoor-thin-structures", "indoor-no-objects"]
)
def test_detail_of_a_perfect_working_size_model(seed, objects):
    shape = (448, 600)
    scene = render_scene(seed, *shape, config=SceneConfig(objects=objects, noise_std=0.0))
    disparity = np.where(scene.valid_mask, 1.0 / scene.depth_m, 0.0).astype(np.float32)  # sky: 0
    field = perfect_518_model(disparity)
    untiled, _ = tiled_with(field, shape, Tiling(levels=0))
    tiled, _ = tiled_with(field, shape, Tiling())
    before, after = gradient_correlation(untiled.depth, disparity), gradient_correlation(tiled.depth, disparity)
    if objects:  # poles, wires and object edges: the tiles resolve what the 112-px global pass blurs away
        assert after >= before + 0.15, (before, after)
    else:  # ground and sky only: nothing to gain, and nothing lost
        assert after >= before - 0.01, (before, after)


@pytest.mark.parametrize(
    ("sky", "wall", "max_depth"), [(0.0, 1.0, None), (20.0, 5.0, 20.0)], ids=["relative", "metric"]
)
def test_flat_and_sky_tiles_stay_finite_and_fall_back_to_the_global_pass(sky, wall, max_depth):
    shape = (448, 600)
    rng = np.random.default_rng(2)

    def field(box, size_hw):
        # Sky above row 200 (relative models predict exact zeros there, metric ones their far limit), a flat wall
        # below; each tile gets its own random scale of ~1e-6 relative noise: the worst case for a fit that
        # trusts the tile.
        y, _ = sample_grid(box, size_hw)
        flat = np.where(y < 200, sky, wall)
        if box == (0, 0, *shape):
            return flat
        return rng.uniform(0.1, 10) * flat * (1 + rng.normal(0, 1e-6, flat.shape))

    result, _ = tiled_with(field, shape, Tiling(), max_depth=max_depth)
    untiled, _ = tiled_with(field, shape, Tiling(levels=0), max_depth=max_depth)
    assert np.isfinite(result.depth).all()
    assert result.depth.min() >= 0 and result.depth.max() <= untiled.depth.max() * 1.001
    np.testing.assert_allclose(result.depth[:180], sky, atol=1e-4 * max(sky, wall))  # sky stays at the global value
    np.testing.assert_allclose(result.depth[220:], wall, atol=1e-3 * max(sky, wall))  # so does the wall
    assert sum(p["fallback_tiles"] for p in result.meta["tiling"]["plan"]) > 0


@pytest.mark.parametrize("tiling", [Tiling(), Tiling(tile_size=300)], ids=["auto", "tile-covers-short-side"])
def test_one_tile_image_equals_the_untiled_prediction(tiny_model, tiling):
    rgb = np.random.default_rng(0).integers(0, 256, (200, 260, 3), dtype=np.uint8)
    predictor = DepthPredictor(tiny_model, input_size=INPUT_SIZE)
    result = predictor.predict(rgb, tiling=tiling)
    np.testing.assert_array_equal(result.depth, predictor.predict(rgb).depth)
    assert result.meta["tiling"]["plan"] == [] and predictor.predict(rgb).meta == {}


def global_range(depth: np.ndarray, input_size: int) -> np.ndarray:
    """1 and 99 % percentiles at the global pass's resolution (area-resampled to the working size): the range of
    the global structure, which tiling keeps, leaving out the finer detail it replaces with the tiles'."""
    h, w = working_size(*depth.shape, input_size)
    return np.percentile(cv2.resize(depth, (w, h), interpolation=cv2.INTER_AREA), [1, 99])


def photo(shape: tuple[int, int]) -> np.ndarray:
    bgr = cv2.imread(str(EXAMPLES / "chelsea.jpg"))
    return np.ascontiguousarray(cv2.resize(bgr, shape[::-1], interpolation=cv2.INTER_CUBIC)[..., ::-1])


@pytest.mark.parametrize("metric", [False, True], ids=["relative", "metric"])
def test_random_weight_model_on_a_photo_has_no_grid_and_keeps_the_range(make_model, metric):
    model = make_model("tiny", max_depth=20.0 if metric else None)
    predictor = DepthPredictor(model, input_size=INPUT_SIZE)
    rgb = photo((448, 600))
    tiled = predictor.predict(rgb, tiling=True, batch_size=8)
    untiled = predictor.predict(rgb)
    levels = plan_levels(448, 600, Tiling(), INPUT_SIZE)
    assert tiled.depth.shape == (448, 600) and tiled.depth.dtype == np.float32
    across, inner = boundary_and_inner_steps(tiled.depth, levels)
    assert across <= inner
    # Random weights: tiles disagree with the global pass and mostly fall back to it. Trusting every tile anyway
    # (min_r2=0) must not draw the grid either.
    trusting = predictor.predict(rgb, tiling=Tiling(min_r2=0.0), batch_size=8)
    if not metric:  # (a random metric model's tiles explain less than a constant, R^2 < 0: they still fall back)
        used = sum(p["tiles"] - p["fallback_tiles"] for p in trusting.meta["tiling"]["plan"])
        assert used >= 0.5 * sum(len(lv.boxes) for lv in levels)  # only flat or negative-scale tiles fall back
    across, inner = boundary_and_inner_steps(trusting.depth, levels)
    assert across <= inner
    lo, hi = global_range(untiled.depth, predictor.input_size)
    np.testing.assert_allclose(global_range(tiled.depth, predictor.input_size), [lo, hi], atol=0.02 * (hi - lo))


@pytest.mark.slow
def test_vits_random_weights_on_a_12_megapixel_photo(make_model):
    """The real architecture at its real working size on a 4000 x 3000 photo: the first level's 12 tiles (the
    default adds a second level of 35; the merge code is the same, the stand-in tests cover several levels).

    Every tile is trusted (``min_r2=0``): with the defaults, random-weight tiles disagree with the global pass and
    nearly all fall back to it, which would make this check nearly vacuous.
    """
    predictor = DepthPredictor(make_model("vits"))
    rgb = photo((3000, 4000))
    tiling = Tiling(min_r2=0.0, levels=1)
    tiled = predictor.predict(rgb, tiling=tiling, batch_size=4)
    untiled = predictor.predict(rgb)
    levels = plan_levels(3000, 4000, tiling, 518)
    assert [lv.side for lv in levels] == [1500]
    assert sum(p["fallback_tiles"] for p in tiled.meta["tiling"]["plan"]) <= 4
    across, inner = boundary_and_inner_steps(tiled.depth, levels)
    assert across <= inner
    lo, hi = global_range(untiled.depth, predictor.input_size)
    np.testing.assert_allclose(global_range(tiled.depth, predictor.input_size), [lo, hi], atol=0.05 * (hi - lo))


def test_plan_levels_rules():
    assert [lv.side for lv in plan_levels(3000, 4000, Tiling())] == [1500, 750]  # 12 MP: two levels
    assert [lv.side for lv in plan_levels(6000, 8000, Tiling())] == [3000, 1500]  # at most two automatically
    assert [lv.side for lv in plan_levels(6000, 8000, Tiling(levels=3))] == [3000, 1500, 750]
    assert [lv.side for lv in plan_levels(3000, 4000, Tiling(tile_size=1000))] == [2000, 1000]
    assert plan_levels(1000, 1500, Tiling()) == []  # short side below 2 x 518: the global pass is enough
    level = plan_levels(3000, 4000, Tiling())[1]
    assert level.ys[0] == 0 and level.ys[-1] + level.side == 3000 and level.xs[-1] + level.side == 4000
    assert min(b - a for a, b in itertools.pairwise(level.xs)) <= 0.75 * level.side


def test_bad_tiling_options_are_rejected():
    with pytest.raises(ValueError, match=r"expected overlap in \(0, 0.5\], got 0.7"):
        Tiling(overlap=0.7)
    with pytest.raises(ValueError, match="expected tile_size an integer >= 32"):
        Tiling(tile_size=8)
    with pytest.raises(ValueError, match="expected levels a non-negative integer"):
        Tiling(levels=-1)
    with pytest.raises(ValueError, match=r"expected min_r2 in \[0, 1\), got 1.5"):
        Tiling(min_r2=1.5)
    with pytest.raises(ValueError, match="expected tiles of at least 32 px, got 28 px for 4 levels"):
        plan_levels(448, 600, Tiling(levels=4))
    predictor = DepthPredictor(BoxStandIn([], None))
    with pytest.raises(TypeError, match="expected tiling None, a bool or a Tiling, got str"):
        predictor.predict(np.zeros((8, 8, 3), np.uint8), tiling="yes")
