"""Procedural synthetic scenes with exact depth: a miniature of the paper's "precise synthetic labels".

A pinhole camera ray-casts (numpy, vectorised, analytic intersections) a randomly generated scene:

* **outdoor**: a ground plane, sky, boxes (rotated about the vertical axis) and walls at various depths,
  spheres, poles and wires (thin structures), occluding each other;
* **indoor**: a room (floor, ceiling, three walls) with furniture-like boxes, spheres and poles, no sky.

Every surface carries a procedural texture (checker, stripes, bricks, fractal noise, ...) defined in metres on
the surface, so its projected scale shrinks with distance; textures are low-pass filtered by the pixel
footprint (fine detail fades far away, as in a real camera); shading is Lambertian with a sun or a light
near the camera, with cast shadows; outdoor scenes have aerial perspective (haze grows with distance) and a
sky gradient. Those cues are what lets a tiny network learn depth from these images in minutes on a CPU.

Depth convention: ``depth_m`` is *planar* depth (the z coordinate along the optical axis, what the readers
of the real datasets return after conversion), exact up to float32 rounding. Sky (no surface within
``max_distance`` = 500 m along the ray) has ``depth_m = +inf``, ``sky_mask = True`` and ``valid_mask = False``;
the disparity of sky is 0 (see :func:`depth_anything_v2.data.datasets.depth_to_disparity`).

Everything is determined by ``(seed, index)`` (numpy ``SeedSequence``), independent of the order in which
scenes are generated and of the process that renders them.

Example::

    >>> from depth_anything_v2.data.synthetic import render_scene
    >>> scene = render_scene(seed=0, height=96, width=128)
    >>> scene.image_rgb.shape, scene.image_rgb.dtype, scene.depth_m.dtype
    ((96, 128, 3), dtype('uint8'), dtype('float32'))
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ..io.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

__all__ = ["SceneConfig", "SyntheticScene", "SyntheticScenes", "render_scene", "write_synthetic_folder"]

_EPS = 1e-6


@dataclass(frozen=True)
class SceneConfig:
    """Ranges the scene sampler draws from (all lengths in metres, angles in degrees)."""

    indoor_probability: float = 0.3
    hfov_deg: tuple[float, float] = (55.0, 80.0)
    camera_height_m: tuple[float, float] = (1.0, 2.2)
    pitch_deg: tuple[float, float] = (-14.0, 4.0)  # negative looks down
    roll_deg: tuple[float, float] = (-3.0, 3.0)
    max_distance: float = 500.0  # rays that hit nothing within this distance see the sky
    shadows: bool = True
    noise_std: float = 1.5  # sensor noise, in 8-bit levels
    objects: bool = True  # False: only the ground / room shell (and sky), e.g. to check the geometry


@dataclass
class SyntheticScene:
    """One rendered scene.

    Attributes:
        image_rgb: ``(H, W, 3)`` uint8.
        depth_m: ``(H, W)`` float32 planar depth in metres; ``+inf`` on sky.
        valid_mask: ``(H, W)`` bool, finite depth (False on sky).
        sky_mask: ``(H, W)`` bool.
        intrinsics: ``(3, 3)`` float64 pinhole matrix ``[[f, 0, cx], [0, f, cy], [0, 0, 1]]`` in pixels.
        kind: ``"outdoor"`` or ``"indoor"``.
        camera: ``{"height_m", "pitch_deg", "roll_deg", "hfov_deg"}`` (camera above the ground plane y = 0).
    """

    image_rgb: np.ndarray
    depth_m: np.ndarray
    valid_mask: np.ndarray
    sky_mask: np.ndarray
    intrinsics: np.ndarray
    kind: str
    camera: dict[str, float]


# ------------------------------------------------------------------------------------------ geometry
def _rot_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _safe(d: np.ndarray) -> np.ndarray:
    return np.where(np.abs(d) < 1e-12, 1e-12, d)


Vec = tuple[Any, Any, Any]  # x, y, z components: floats or (N,) arrays (contiguous: much faster than (N, 3))


def _split(a: np.ndarray) -> Vec:
    """(3,) or (N, 3) -> three scalars / contiguous (N,) arrays."""
    if a.ndim == 1:
        return float(a[0]), float(a[1]), float(a[2])
    return tuple(np.ascontiguousarray(a[:, k]) for k in range(3))  # type: ignore[return-value]


class _Shape:
    """A primitive. ``intersect(o, d)`` gives the ray parameter of the first hit (inf if none) for ray
    directions ``d`` and origins ``o`` given as component triples (see ``_split``); ``surface(p, d)`` gives
    normals (N, 3) and 2-D surface coordinates (N, 2) in metres at hit points ``p`` (N, 3)."""

    texture: dict[str, Any]

    def intersect(self, o: Vec, d: Vec) -> np.ndarray:
        raise NotImplementedError

    def surface(self, p: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def corners(self) -> np.ndarray | None:
        """(8, 3) corners of a bounding box in world coordinates, or None for unbounded shapes (no culling)."""
        return None

    def bounding_sphere(self) -> tuple[np.ndarray, float] | None:
        c = self.corners()
        if c is None:
            return None
        center = c.mean(axis=0)
        return center, float(np.sqrt(((c - center) ** 2).sum(axis=1).max()))


def _aabb_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


class _Plane(_Shape):
    """Horizontal plane ``y = height`` (the ground, or a ceiling), optionally limited to a disc."""

    def __init__(self, height: float, texture: dict[str, Any], radius: float = np.inf) -> None:
        self.height, self.texture, self.radius = height, texture, radius

    def intersect(self, o: Vec, d: Vec) -> np.ndarray:
        t = (self.height - o[1]) / _safe(d[1])
        t = np.where(t > _EPS, t, np.inf)
        if np.isfinite(self.radius):
            with np.errstate(invalid="ignore"):
                x, z = o[0] + t * d[0], o[2] + t * d[2]
                t = np.where(x * x + z * z < self.radius**2, t, np.inf)
        return t

    def surface(self, p: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = np.zeros_like(p)
        n[:, 1] = -np.sign(d[:, 1])
        return n, np.stack([p[:, 0], p[:, 2]], axis=1)


class _Box(_Shape):
    """A box rotated by ``yaw`` about the vertical axis; ``inside=True`` renders its inner faces (a room)."""

    def __init__(
        self, center: Sequence[float], half: Sequence[float], yaw: float, texture: dict[str, Any], inside: bool = False
    ) -> None:
        self.center = np.asarray(center, float)
        self.half = np.asarray(half, float)
        self.yaw = yaw
        self.rot = _rot_y(-yaw)  # world -> local
        self.texture, self.inside = texture, inside

    def intersect(self, o: Vec, d: Vec) -> np.ndarray:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        ox, oy, oz = o[0] - self.center[0], o[1] - self.center[1], o[2] - self.center[2]
        # Local frame = world rotated by -yaw about y.
        local_o = (c * ox - s * oz, oy, s * ox + c * oz)
        local_d = (c * d[0] - s * d[2], d[1], s * d[0] + c * d[2])
        tnear = tfar = None
        for k in range(3):
            inv = 1.0 / _safe(local_d[k])
            t1 = (-self.half[k] - local_o[k]) * inv
            t2 = (self.half[k] - local_o[k]) * inv
            lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
            tnear = lo if tnear is None else np.maximum(tnear, lo)
            tfar = hi if tfar is None else np.minimum(tfar, hi)
        if self.inside:
            return np.where((tnear <= tfar) & (tfar > _EPS), tfar, np.inf)
        return np.where((tnear <= tfar) & (tnear > _EPS), tnear, np.inf)

    def corners(self) -> np.ndarray | None:
        if self.inside:
            return None
        return self.center + _aabb_corners(-self.half, self.half) @ self.rot  # local -> world

    def surface(self, p: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pl = (p - self.center) @ self.rot.T
        dl = d @ self.rot.T
        # The face hit is the one whose local coordinate is closest to the box's half size.
        axis = np.argmin(np.abs(np.abs(pl) - self.half), axis=1)
        nl = np.zeros_like(pl)
        rows = np.arange(len(pl))
        nl[rows, axis] = -np.sign(dl[rows, axis])
        n = nl @ self.rot  # local -> world
        other = np.array([[2, 1], [0, 2], [0, 1]])[axis]
        uv = np.stack([pl[rows, other[:, 0]], pl[rows, other[:, 1]]], axis=1)
        return n, uv


class _Sphere(_Shape):
    def __init__(self, center: Sequence[float], radius: float, texture: dict[str, Any]) -> None:
        self.center, self.radius, self.texture = np.asarray(center, float), radius, texture

    def intersect(self, o: Vec, d: Vec) -> np.ndarray:
        ox, oy, oz = o[0] - self.center[0], o[1] - self.center[1], o[2] - self.center[2]
        a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
        b = d[0] * ox + d[1] * oy + d[2] * oz
        c = ox * ox + oy * oy + oz * oz - self.radius**2
        disc = b * b - a * c
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        return np.where((disc >= 0) & (t > _EPS), t, np.inf)

    def corners(self) -> np.ndarray | None:
        return _aabb_corners(self.center - self.radius, self.center + self.radius)

    def surface(self, p: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = (p - self.center) / self.radius
        theta = np.arctan2(n[:, 0], n[:, 2]) * self.radius
        phi = np.arcsin(np.clip(n[:, 1], -1, 1)) * self.radius
        return n, np.stack([theta, phi], axis=1)


class _Cylinder(_Shape):
    """A finite cylinder along the world ``axis`` (1: vertical pole, 0: horizontal wire along x)."""

    def __init__(
        self, center: Sequence[float], radius: float, extent: tuple[float, float], axis: int, texture: dict[str, Any]
    ) -> None:
        self.center, self.radius, self.extent = np.asarray(center, float), radius, extent
        self.axis, self.texture = axis, texture
        self.cross = [i for i in range(3) if i != axis]

    def intersect(self, o: Vec, d: Vec) -> np.ndarray:
        i, j = self.cross
        ox, oz = o[i] - self.center[i], o[j] - self.center[j]
        dx, dz = d[i], d[j]
        a = _safe(dx * dx + dz * dz)
        b = ox * dx + oz * dz
        c = ox * ox + oz * oz - self.radius**2
        disc = b * b - a * c
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        along = o[self.axis] + t * d[self.axis]
        ok = (disc >= 0) & (t > _EPS) & (along >= self.extent[0]) & (along <= self.extent[1])
        return np.where(ok, t, np.inf)

    def corners(self) -> np.ndarray | None:
        lo, hi = self.center - self.radius, self.center + self.radius
        lo[self.axis], hi[self.axis] = self.extent
        return _aabb_corners(lo, hi)

    def surface(self, p: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i, j = self.cross
        n = np.zeros_like(p)
        n[:, i] = (p[:, i] - self.center[i]) / self.radius
        n[:, j] = (p[:, j] - self.center[j]) / self.radius
        angle = np.arctan2(n[:, i], n[:, j]) * self.radius
        return n, np.stack([angle, p[:, self.axis]], axis=1)


# ------------------------------------------------------------------------------------------ textures
class _Noise:
    """Tileable 2-D value noise (smoothstep-interpolated random lattice) with fractal octaves."""

    def __init__(self, rng: np.random.Generator, size: int = 64) -> None:
        self.grid = rng.random((size, size))
        self.size = size

    def __call__(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        s = self.size
        iu, iv = np.floor(u), np.floor(v)
        fu, fv = u - iu, v - iv
        fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
        i0, j0 = iu.astype(np.int64) % s, iv.astype(np.int64) % s
        i1, j1 = (i0 + 1) % s, (j0 + 1) % s
        g = self.grid
        top = g[i0, j0] * (1 - fu) + g[i1, j0] * fu
        bottom = g[i0, j1] * (1 - fu) + g[i1, j1] * fu
        return top * (1 - fv) + bottom * fv

    def fbm(self, u: np.ndarray, v: np.ndarray, footprint: np.ndarray, octaves: int = 4) -> np.ndarray:
        """Fractal noise in [0, 1]; octaves finer than the pixel footprint fade to their mean (0.5)."""
        total = np.zeros_like(u)
        amp, freq, norm = 1.0, 1.0, 0.0
        for k in range(octaves):
            fade = np.clip(1.5 - 2.0 * freq * footprint, 0.0, 1.0)
            total += amp * (0.5 + fade * (self(u * freq + 17.0 * k, v * freq - 31.0 * k) - 0.5))
            norm += amp
            amp *= 0.5
            freq *= 2.0
        return total / norm


_PATTERNS = ("checker", "stripes", "bricks", "noise", "grid", "dots")


def _random_color(rng: np.random.Generator, saturation: float = 0.6) -> np.ndarray:
    base = rng.uniform(0.15, 0.95)
    tint = rng.uniform(-1, 1, 3) * saturation * 0.5
    return np.clip(base + tint * base, 0.02, 1.0)


def _random_texture(rng: np.random.Generator, freq: tuple[float, float] = (0.6, 4.0)) -> dict[str, Any]:
    c0 = _random_color(rng)
    c1 = np.clip(c0 * rng.uniform(0.3, 0.8) + rng.uniform(-0.1, 0.1, 3), 0.0, 1.0)
    if rng.random() < 0.5:
        c0, c1 = c1, c0
    return {
        "pattern": _PATTERNS[rng.integers(len(_PATTERNS))],
        "freq": float(np.exp(rng.uniform(np.log(freq[0]), np.log(freq[1])))),
        "c0": c0,
        "c1": c1,
        "grain": float(rng.uniform(0.05, 0.3)),
        "offset": rng.uniform(0, 100, 2),
    }


def _shade_texture(tex: dict[str, Any], uv: np.ndarray, footprint: np.ndarray, noise: _Noise) -> np.ndarray:
    """Albedo (N, 3) in [0, 1] of a texture at surface coordinates ``uv`` (N, 2) metres."""
    f = tex["freq"]
    u = uv[:, 0] * f + tex["offset"][0]
    v = uv[:, 1] * f + tex["offset"][1]
    pattern = tex["pattern"]
    if pattern == "checker":
        value = ((np.floor(u) + np.floor(v)) % 2).astype(float)
    elif pattern == "stripes":
        value = (np.floor(u * 2) % 2).astype(float)
    elif pattern == "bricks":
        row = np.floor(v * 2)
        uu = u + 0.5 * (row % 2)
        mortar = (np.abs(uu - np.round(uu)) < 0.06) | (np.abs(v * 2 - np.round(v * 2)) < 0.1)
        value = np.where(mortar, 0.0, 0.6 + 0.4 * noise(np.floor(uu) * 3.1, row * 1.7))
    elif pattern == "grid":
        value = ((np.abs(u - np.round(u)) < 0.08) | (np.abs(v - np.round(v)) < 0.08)).astype(float)
    elif pattern == "dots":
        value = (np.hypot(u - np.round(u), v - np.round(v)) < 0.3).astype(float)
    else:
        value = noise.fbm(u, v, footprint * f)
    if pattern != "noise":
        # Pattern detail smaller than a pixel fades to its mean: a camera's low-pass, and a depth cue.
        fade = np.clip(1.5 - 2.0 * f * footprint, 0.0, 1.0)
        mean = {"checker": 0.5, "stripes": 0.5, "bricks": 0.6, "grid": 0.3, "dots": 0.28}[pattern]
        value = mean + fade * (value - mean)
    grain = noise.fbm(u * 7.3, v * 7.3, footprint * f * 7.3, octaves=2) - 0.5
    value = np.clip(value + tex["grain"] * grain, 0.0, 1.0)
    return tex["c0"] * (1 - value[:, None]) + tex["c1"] * value[:, None]


# --------------------------------------------------------------------------------------- scene sampler
# The samplers below draw from ``rng`` in a fixed order: scenes are reproducible from their seed, so any change
# to the order of the draws changes every rendered scene.
def _sample_scene(rng: np.random.Generator, cfg: SceneConfig) -> tuple[str, list[_Shape], dict[str, Any]]:
    """A random scene: its kind, its shapes and its environment (camera height, lights, sky colours)."""
    indoor = rng.random() < cfg.indoor_probability
    cam_h = rng.uniform(*cfg.camera_height_m)
    env: dict[str, Any] = {"camera_height": cam_h}
    shapes, lighting = _sample_room(rng, cfg, cam_h) if indoor else _sample_outdoors(rng, cfg)
    env.update(lighting)
    return ("indoor" if indoor else "outdoor"), shapes, env


def _sample_room(rng: np.random.Generator, cfg: SceneConfig, cam_h: float) -> tuple[list[_Shape], dict[str, Any]]:
    """A room (shell and floor) with furniture-like boxes, spheres and poles, lit from near the ceiling."""
    ceil = max(cam_h + rng.uniform(0.6, 1.6), 2.4)
    half_w = rng.uniform(2.0, 5.0)
    back = rng.uniform(4.0, 14.0)
    # The room shell reaches slightly below the floor plane so the floor (its own texture) always wins.
    shell = _Box(
        [rng.uniform(-0.5, 0.5), ceil / 2 - 0.05, back / 2 - 0.5],
        [half_w, ceil / 2 + 0.05, back / 2 + 0.5],
        0.0,
        _random_texture(rng, (0.5, 3.0)),
        inside=True,
    )
    floor = _Plane(0.0, _random_texture(rng, (0.8, 4.0)))  # floor with its own texture
    shapes = [shell, floor, *_sample_furniture(rng, cfg, ceil, half_w, back)]
    light = np.array([rng.uniform(-1, 1), ceil - 0.1, rng.uniform(-0.5, 1.0)])
    lighting = {
        "indoor": True,
        "light": light,
        "light_falloff": rng.uniform(3.0, 8.0),
        "ambient": rng.uniform(0.15, 0.3),
    }
    return shapes, lighting


def _sample_furniture(
    rng: np.random.Generator, cfg: SceneConfig, ceil: float, half_w: float, back: float
) -> list[_Shape]:
    """Boxes on the floor, spheres and floor-to-ceiling poles inside a room ``2 half_w`` wide, ``back`` deep."""
    shapes: list[_Shape] = []
    for _ in range(rng.integers(2, 7) * cfg.objects):
        w, h, dd = rng.uniform(0.3, 1.5), rng.uniform(0.3, 2.0), rng.uniform(0.3, 1.5)
        x = rng.uniform(-half_w + w, half_w - w)
        z = rng.uniform(1.5, max(back - dd, 2.0))
        shapes.append(_Box([x, h / 2, z], [w / 2, h / 2, dd / 2], rng.uniform(0, np.pi), _random_texture(rng)))
    for _ in range(rng.integers(0, 3) * cfg.objects):
        r = rng.uniform(0.15, 0.6)
        shapes.append(
            _Sphere(
                [rng.uniform(-half_w, half_w), r + rng.uniform(0, 1.0), rng.uniform(1.5, back)],
                r,
                _random_texture(rng, (2.0, 8.0)),
            )
        )
    for _ in range(rng.integers(0, 4) * cfg.objects):
        shapes.append(
            _Cylinder(
                [rng.uniform(-half_w, half_w), 0.0, rng.uniform(1.0, back)],
                rng.uniform(0.02, 0.06),
                (0.0, ceil),
                1,
                _random_texture(rng, (2.0, 8.0)),
            )
        )
    return shapes


def _sample_outdoors(rng: np.random.Generator, cfg: SceneConfig) -> tuple[list[_Shape], dict[str, Any]]:
    """A ground disc with buildings and thin structures, under a sun and a hazy sky."""
    shapes: list[_Shape] = [_Plane(0.0, _random_texture(rng, (0.3, 2.5)), radius=cfg.max_distance)]
    shapes += _sample_buildings(rng, cfg)
    shapes += _sample_street_objects(rng, cfg)
    return shapes, _sample_daylight(rng)


def _sample_buildings(rng: np.random.Generator, cfg: SceneConfig) -> list[_Shape]:
    """Boxes from 3 to 80 m away, and sometimes a far wall (a row of buildings) across the view."""
    shapes: list[_Shape] = []
    for _ in range(rng.integers(3, 10) * cfg.objects):
        z = np.exp(rng.uniform(np.log(3.0), np.log(80.0)))
        # Width and depth at most ~half the distance: near objects stay small enough not to fill the view.
        w, dd = rng.uniform(0.5, min(6.0, 0.2 + 0.5 * z), size=2)
        h = np.exp(rng.uniform(np.log(0.5), np.log(12.0)))
        x = rng.uniform(-0.8, 0.8) * z + rng.uniform(-2, 2)
        shapes.append(_Box([x, h / 2, z], [w / 2, h / 2, dd / 2], rng.uniform(0, np.pi), _random_texture(rng)))
    if rng.random() < 0.5 * cfg.objects:  # a far wall / building row across the view
        z = rng.uniform(30.0, 150.0)
        h = rng.uniform(5.0, 30.0)
        shapes.append(
            _Box(
                [rng.uniform(-20, 20), h / 2, z],
                [rng.uniform(20, 120), h / 2, 1.0],
                rng.uniform(-0.3, 0.3),
                _random_texture(rng, (0.1, 1.0)),
            )
        )
    return shapes


def _sample_street_objects(rng: np.random.Generator, cfg: SceneConfig) -> list[_Shape]:
    """Spheres (on or above the ground), vertical poles and horizontal wires (thin structures)."""
    shapes: list[_Shape] = []
    for _ in range(rng.integers(0, 5) * cfg.objects):
        r = rng.uniform(0.3, 2.5)
        z = rng.uniform(3.0, 50.0)
        shapes.append(
            _Sphere(
                [rng.uniform(-0.7, 0.7) * z, r + rng.choice([0.0, rng.uniform(0, 3)]), z],
                r,
                _random_texture(rng, (1.0, 6.0)),
            )
        )
    for _ in range(rng.integers(0, 5) * cfg.objects):
        z = rng.uniform(2.0, 40.0)
        shapes.append(
            _Cylinder(
                [rng.uniform(-0.7, 0.7) * z, 0.0, z],
                rng.uniform(0.03, 0.2),
                (0.0, rng.uniform(2.0, 9.0)),
                1,
                _random_texture(rng, (2.0, 8.0)),
            )
        )
    for _ in range(rng.integers(0, 3) * cfg.objects):
        z = rng.uniform(4.0, 30.0)
        shapes.append(
            _Cylinder(
                [0.0, rng.uniform(3.0, 8.0), z],
                rng.uniform(0.015, 0.05),
                (-60.0, 60.0),
                0,
                _random_texture(rng, (2.0, 8.0)),
            )
        )
    return shapes


def _sample_daylight(rng: np.random.Generator) -> dict[str, Any]:
    """Sun direction, ambient level, haze distance and the sky's horizon and zenith colours."""
    sun_elev = np.radians(rng.uniform(15, 75))
    sun_az = rng.uniform(0, 2 * np.pi)
    sun = np.array([np.cos(sun_elev) * np.sin(sun_az), np.sin(sun_elev), np.cos(sun_elev) * np.cos(sun_az)])
    return {
        "indoor": False,
        "sun": sun,
        "ambient": rng.uniform(0.25, 0.45),
        "haze_m": float(np.exp(rng.uniform(np.log(40.0), np.log(300.0)))),
        "horizon": np.clip(np.array([0.75, 0.8, 0.88]) + rng.uniform(-0.1, 0.1, 3), 0, 1),
        "zenith": np.clip(np.array([0.3, 0.5, 0.85]) + rng.uniform(-0.15, 0.15, 3), 0, 1),
    }


@dataclass
class _Camera:
    """Pinhole camera at ``origin``; ``to_world`` maps camera (x right, y up, z forward) to world axes."""

    origin: np.ndarray
    to_world: np.ndarray
    f: float
    cx: float
    cy: float
    height: int
    width: int

    def screen_rect(self, corners: np.ndarray | None) -> tuple[int, int, int, int] | None:
        """Pixel rectangle ``(top, bottom, left, right)`` (exclusive ends) covering projected ``corners``;
        None when they cannot be bounded (unbounded shape, or a corner at/behind the camera plane)."""
        if corners is None:
            return None
        cam = (corners - self.origin) @ self.to_world  # world -> camera (orthonormal: inverse = transpose)
        z = cam[:, 2]
        if np.any(z <= 1e-3):
            return None
        u = self.f * cam[:, 0] / z + self.cx
        v = self.cy - self.f * cam[:, 1] / z
        # 2 px margin: the projected box of a convex hull bounds the shape; the margin absorbs rounding.
        left = int(np.clip(np.floor(u.min()) - 2, 0, self.width))
        right = int(np.clip(np.ceil(u.max()) + 3, 0, self.width))
        top = int(np.clip(np.floor(v.min()) - 2, 0, self.height))
        bottom = int(np.clip(np.ceil(v.max()) + 3, 0, self.height))
        return top, bottom, left, right


def _closest(shapes: Sequence[_Shape], cam: _Camera, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First hit of every primary ray ``d`` (H*W, 3): ray parameter and shape index (-1: none).

    Each bounded shape is only tested against the rays of the screen rectangle its bounding box projects to
    (a large saving: most objects cover a small part of the image)."""
    t_best = np.full(len(d), np.inf)
    idx = np.full(len(d), -1, dtype=np.int64)
    oc = _split(cam.origin)
    dc = _split(d)
    pix = np.arange(len(d)).reshape(cam.height, cam.width)
    for k, shape in enumerate(shapes):
        rect = cam.screen_rect(shape.corners())
        if rect is None:
            sel = None
            t = shape.intersect(oc, dc)
        else:
            top, bottom, left, right = rect
            if top >= bottom or left >= right:
                continue
            sel = pix[top:bottom, left:right].ravel()
            t = shape.intersect(oc, tuple(c[sel] for c in dc))  # type: ignore[arg-type]
        current = t_best if sel is None else t_best[sel]
        closer = t < current
        if sel is None:
            t_best = np.where(closer, t, t_best)
            idx = np.where(closer, k, idx)
        else:
            hit = sel[closer]
            t_best[hit] = t[closer]
            idx[hit] = k
    return t_best, idx


def _occluded(shapes: Sequence[_Shape], p: np.ndarray, to_light: np.ndarray, max_t: np.ndarray | float) -> np.ndarray:
    """Whether the segment from each point ``p`` (N, 3) along ``to_light`` (unit, (3,) or (N, 3)) hits a shape
    before ``max_t``. Points whose ray misses a shape's bounding sphere skip its exact test."""
    blocked = np.zeros(len(p), dtype=bool)
    for shape in shapes:
        if isinstance(shape, _Plane) or (isinstance(shape, _Box) and shape.inside):
            continue  # the ground / room shell cannot shadow points above it
        sphere = shape.bounding_sphere()
        assert sphere is not None  # every other shape is bounded
        center, radius = sphere
        w = center - p
        along = w @ to_light if to_light.ndim == 1 else np.einsum("ij,ij->i", w, to_light)
        dist2 = np.einsum("ij,ij->i", w, w) - along * along
        cand = np.flatnonzero(~blocked & (dist2 < radius * radius) & (along > -radius))
        if cand.size == 0:
            continue
        light = to_light if to_light.ndim == 1 else to_light[cand]
        limit = max_t if np.isscalar(max_t) else np.asarray(max_t)[cand]
        t = shape.intersect(_split(p[cand]), _split(light))
        blocked[cand[t < limit]] = True
    return blocked


def render_scene(
    seed: int | Sequence[int] | np.random.SeedSequence,
    height: int = 192,
    width: int = 256,
    config: SceneConfig | None = None,
) -> SyntheticScene:
    """Render one random scene, fully determined by ``seed`` (an int, ints, or a ``SeedSequence``).

    Returns a :class:`SyntheticScene` (image, exact planar depth in metres with ``inf`` on sky, masks,
    intrinsics). About 12 ms at 96 x 128 and 50 ms at 192 x 256 on one (busy) CPU core.
    """
    if height < 2 or width < 2:
        raise ValueError(f"expected an image size of at least 2 x 2, got {height} x {width}")
    cfg = config or SceneConfig()
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    rng = np.random.default_rng(ss)
    kind, shapes, env = _sample_scene(rng, cfg)
    noise = _Noise(rng)
    cam, d, camera = _sample_camera(rng, cfg, env["camera_height"], height, width)
    t, idx = _closest(shapes, cam, d)
    ray_len = np.linalg.norm(d, axis=1)
    hit = np.isfinite(t) & (t * ray_len < cfg.max_distance)
    color, normal, p_all = _albedo(shapes, cam, d, t, np.where(hit, idx, -1), noise)

    hit_idx = np.flatnonzero(hit)
    p, n, dist = p_all[hit_idx], normal[hit_idx], t[hit_idx] * ray_len[hit_idx]
    if env["indoor"]:
        color[hit_idx] *= _room_light(shapes, env, cfg, p, n, dist)[:, None]
    else:
        color[hit_idx] *= _sunlight(shapes, env, cfg, p, n)[:, None]
        # Aerial perspective: haze grows with distance towards the horizon colour.
        haze = 1.0 - np.exp(-dist / env["haze_m"])
        color[hit_idx] = color[hit_idx] * (1 - haze[:, None]) + env["horizon"] * haze[:, None]
        sky = np.flatnonzero(~hit)
        if sky.size:
            color[sky] = _sky(d[sky], ray_len[sky], env, noise, rng)

    image = color.reshape(height, width, 3) * 255.0
    if cfg.noise_std > 0:
        image = image + rng.normal(0.0, cfg.noise_std, image.shape)
    image_rgb = np.clip(np.round(image), 0, 255).astype(np.uint8)
    hit2d = hit.reshape(height, width)
    depth = np.where(hit2d, t.reshape(height, width), np.inf).astype(np.float32)
    intrinsics = np.array([[cam.f, 0.0, cam.cx], [0.0, cam.f, cam.cy], [0.0, 0.0, 1.0]])
    return SyntheticScene(image_rgb, depth, hit2d.copy(), ~hit2d, intrinsics, kind, camera)


def _sample_camera(
    rng: np.random.Generator, cfg: SceneConfig, camera_height: float, height: int, width: int
) -> tuple[_Camera, np.ndarray, dict[str, float]]:
    """A pinhole camera (principal point at the image centre, square pixels) with random field of view, pitch
    and roll: the camera, its primary rays ``(H*W, 3)`` in world axes and the parameters drawn."""
    hfov_deg = rng.uniform(*cfg.hfov_deg)
    hfov = np.radians(hfov_deg)
    f = 0.5 * width / np.tan(0.5 * hfov)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    pitch_deg, roll_deg = rng.uniform(*cfg.pitch_deg), rng.uniform(*cfg.roll_deg)
    pitch, roll = np.radians(pitch_deg), np.radians(roll_deg)
    vv, uu = np.mgrid[0:height, 0:width].astype(np.float64)
    # Camera frame: x right, y up, z forward, with z = 1 so that the ray parameter t *is* the planar depth.
    d_cam = np.stack([(uu - cx) / f, -(vv - cy) / f, np.ones_like(uu)], axis=-1).reshape(-1, 3)
    cr, sr = np.cos(roll), np.sin(roll)
    cp, sp = np.cos(pitch), np.sin(pitch)
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    r_pitch = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])  # pitch > 0 looks up: (0, 0, 1) -> (0, sp, cp)
    to_world = r_pitch @ r_roll
    origin = np.array([0.0, camera_height, 0.0])
    camera = {
        "height_m": float(camera_height),
        "pitch_deg": float(pitch_deg),
        "roll_deg": float(roll_deg),
        "hfov_deg": float(hfov_deg),
    }
    return _Camera(origin, to_world, f, cx, cy, height, width), d_cam @ to_world.T, camera


def _albedo(
    shapes: Sequence[_Shape], cam: _Camera, d: np.ndarray, t: np.ndarray, idx: np.ndarray, noise: _Noise
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Texture colour, surface normal and hit point of every ray (zeros where ``idx`` is -1, no hit)."""
    n_pix = len(d)
    color = np.zeros((n_pix, 3))
    ray_len = np.linalg.norm(d, axis=1)
    p_all = cam.origin + np.where(idx >= 0, t, 0.0)[:, None] * d
    normal = np.zeros((n_pix, 3))
    for k, shape in enumerate(shapes):
        sel = np.flatnonzero(idx == k)
        if sel.size == 0:
            continue
        n, uv = shape.surface(p_all[sel], d[sel])
        cos_in = np.abs(np.einsum("ij,ij->i", n, d[sel])) / ray_len[sel]
        # Metres of surface one pixel covers: distance / focal, stretched at grazing angles.
        footprint = t[sel] * ray_len[sel] / cam.f / np.maximum(cos_in, 0.15)
        color[sel] = _shade_texture(shape.texture, uv, footprint, noise)
        normal[sel] = n
    return color, normal, p_all


def _room_light(
    shapes: Sequence[_Shape], env: dict[str, Any], cfg: SceneConfig, p: np.ndarray, n: np.ndarray, dist: np.ndarray
) -> np.ndarray:
    """Light reaching points ``p`` (normals ``n``, ``dist`` metres from the camera) in a room: a point light
    with falloff and shadows, plus ambient and a camera fill light."""
    to_light = env["light"] - p
    light_dist = np.linalg.norm(to_light, axis=1)
    ldir = to_light / light_dist[:, None]
    diffuse = np.clip(np.einsum("ij,ij->i", n, ldir), 0, None)
    if cfg.shadows:
        diffuse = np.where(_occluded(shapes, p + n * 1e-4, ldir, light_dist), 0.0, diffuse)
    falloff = 1.0 / (1.0 + (light_dist / env["light_falloff"]) ** 2)
    # A dim fill light at the camera: nearer surfaces are brighter (as with a flash).
    fill = 0.5 / (1.0 + (dist / 6.0) ** 2)
    return env["ambient"] + 1.4 * diffuse * falloff + fill


def _sunlight(
    shapes: Sequence[_Shape], env: dict[str, Any], cfg: SceneConfig, p: np.ndarray, n: np.ndarray
) -> np.ndarray:
    """Light reaching points ``p`` (normals ``n``) outdoors: ambient plus the sun, with cast shadows."""
    sun = env["sun"]
    diffuse = np.clip(n @ sun, 0, None)
    if cfg.shadows:
        diffuse = np.where(_occluded(shapes, p + n * 1e-4, sun, np.inf), 0.0, diffuse)
    return env["ambient"] + (1.0 - env["ambient"]) * 1.2 * diffuse


def _sky(
    d: np.ndarray, ray_len: np.ndarray, env: dict[str, Any], noise: _Noise, rng: np.random.Generator
) -> np.ndarray:
    """Colour of the sky along rays ``d`` (N, 3): a horizon-to-zenith gradient with clouds."""
    elev = np.clip(d[:, 1] / ray_len, 0.0, 1.0) ** 0.6
    sky_col = env["horizon"] * (1 - elev[:, None]) + env["zenith"] * elev[:, None]
    clouds = noise.fbm(
        d[:, 0] / np.maximum(d[:, 1], 0.05) * 0.8,
        d[:, 2] / np.maximum(d[:, 1], 0.05) * 0.8,
        np.zeros(len(d)),
        octaves=3,
    )
    cloud = np.clip((clouds - 0.55) * 3.0, 0, 1)[:, None] * rng.uniform(0.0, 0.8)
    return sky_col * (1 - cloud) + 0.95 * cloud


# -------------------------------------------------------------------------------------------- dataset
def _scene_seed(seed: int, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), int(index)])


def _size_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    if len(size) != 2:
        raise ValueError(f"expected size as an int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


class SyntheticScenes(Dataset):
    """``n`` procedural scenes as a map-style torch ``Dataset``; scene ``i`` is rendered from ``(seed, i)``.

    Each item is the common sample dict of :mod:`depth_anything_v2.data.datasets` (see
    :func:`~depth_anything_v2.data.datasets.make_sample`): ``"image"`` float32 (3, H, W) ImageNet-normalised,
    ``"disparity"`` (or ``"depth_m"`` with ``target="depth"``) float32 (H, W), ``"valid_mask"`` bool (H, W),
    ``"sky_mask"``, ``"key"`` (``"synthetic-<seed>-<i>"``). For ``target="disparity"`` sky is valid with
    disparity 0; for ``"depth"`` it is invalid.

    Args:
        n: number of scenes.
        size: render size, an int (square) or ``(height, width)``.
        seed: dataset seed; two datasets with different seeds share no scene.
        target: ``"disparity"`` (relative training) or ``"depth"`` (metric).
        transform: optional callable on the numpy sample (see :mod:`depth_anything_v2.data.transforms`).
        config: the scene sampler's :class:`SceneConfig`.
        max_depth: for ``target="depth"``, depths above it are invalid.
        holes: invalidate up to this fraction of each label (a uniform draw per scene in ``[0, holes]``, as
            random rectangles seeded by ``(seed, index)``), like the holes of real depth labels; 0: none.
    """

    def __init__(
        self,
        n: int,
        size: int | tuple[int, int] = (192, 256),
        seed: int = 0,
        *,
        target: str = "disparity",
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        config: SceneConfig | None = None,
        max_depth: float | None = None,
        holes: float = 0.0,
    ) -> None:
        if n < 0:
            raise ValueError(f"expected a non-negative number of scenes, got {n}")
        if not 0.0 <= holes < 1.0:
            raise ValueError(f"expected holes in [0, 1), got {holes}")
        self.holes = holes
        self.n, self.size, self.seed = n, _size_hw(size), seed
        self.target, self.transform, self.config, self.max_depth = target, transform, config, max_depth
        from .datasets import check_target

        check_target(target)

    def __len__(self) -> int:
        return self.n

    def render(self, index: int) -> SyntheticScene:
        """The raw :class:`SyntheticScene` of item ``index``."""
        if not -self.n <= index < self.n:
            raise IndexError(f"scene index {index} out of range for {self.n} scenes")
        index %= max(self.n, 1)
        return render_scene(_scene_seed(self.seed, index), *self.size, config=self.config)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from .datasets import make_sample

        scene = self.render(index)
        depth, valid, sky = scene.depth_m, scene.valid_mask, scene.sky_mask
        if self.holes > 0:
            hole = _holes(np.random.default_rng([self.seed, index % max(self.n, 1), 0x401E]), depth.shape, self.holes)
            depth, valid, sky = np.where(hole, np.nan, depth), valid & ~hole, sky & ~hole
        return make_sample(
            scene.image_rgb,
            depth,
            valid_mask=valid,
            sky_mask=sky,
            target=self.target,  # type: ignore[arg-type]
            max_depth=self.max_depth,
            transform=self.transform,
            key=f"synthetic-{self.seed}-{index % max(self.n, 1)}",
        )


def _holes(rng: np.random.Generator, shape: tuple[int, int], max_fraction: float) -> np.ndarray:
    """Random rectangles covering about ``U(0, max_fraction)`` of ``shape`` (bool, True = hole)."""
    height, width = shape
    goal = rng.uniform(0.0, max_fraction) * height * width
    hole = np.zeros(shape, bool)
    while hole.sum() < goal:
        h, w = rng.integers(1, max(2, height // 3)), rng.integers(1, max(2, width // 3))
        y, x = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
        hole[y : y + h, x : x + w] = True
    return hole


def write_synthetic_folder(
    root: str | Path,
    n: int,
    size: int | tuple[int, int] = (192, 256),
    seed: int = 0,
    *,
    image_format: str = "png",
    config: SceneConfig | None = None,
    start: int = 0,
    overwrite: bool = False,
) -> list[str]:
    """Render scenes ``start .. start+n-1`` into the generic image + depth folder layout.

    Writes ``root/images/<key>.<png|jpg>`` (RGB) and ``root/depth/<key>.npy`` (float32 planar depth in metres,
    ``+inf`` on sky), each file atomically (temporary name + rename); existing files are kept unless
    ``overwrite`` (so an interrupted run can be resumed). Read it back with
    ``ImageDepthFolder(root, depth_unit="m")``. Returns the keys (``scene_<seed>_<index>``), in order.
    """
    import cv2

    if image_format not in ("png", "jpg"):
        raise ValueError(f"expected image_format 'png' or 'jpg', got {image_format!r}")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(parents=True, exist_ok=True)
    height, width = _size_hw(size)
    keys = []
    for index in range(start, start + n):
        key = f"scene_{seed:04d}_{index:06d}"
        keys.append(key)
        image_path = root / "images" / f"{key}.{image_format}"
        depth_path = root / "depth" / f"{key}.npy"
        if not overwrite and image_path.exists() and depth_path.exists():
            continue
        scene = render_scene(_scene_seed(seed, index), height, width, config=config)
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if image_format == "jpg" else []
        ok, buf = cv2.imencode(f".{image_format}", scene.image_rgb[..., ::-1], params)
        if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
            raise RuntimeError(f"could not encode {image_path}")
        import io

        npy = io.BytesIO()
        np.save(npy, scene.depth_m)
        atomic_write_bytes(depth_path, npy.getvalue())
        atomic_write_bytes(image_path, buf.tobytes())
    log.info("wrote %d synthetic scenes to %s", n, root)
    return keys
