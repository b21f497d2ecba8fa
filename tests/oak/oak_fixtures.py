"""A synthetic OAK session with exact depth, and a stand-in model that "predicts" its true disparity.

Scene: an indoor scene of the project's generator (``data/synthetic.py``: exact planar depth, no sky), seen by a
static camera; every frame adds fresh sensor noise to the RGB image (so frames differ) and fresh stereo errors:

* holes covering >= 30 % of the frame: large ellipses (textureless walls), occlusion edges (a band around every
  depth discontinuity) and the near range (< 0.35 m), as OAK-D stereo has;
* noise growing with distance, sigma_Z = 0.003 * Z^2 m (constant in disparity, as stereo);
* outliers: 1 % of the valid pixels off by a factor in [0.5, 1.5];
* uint16 millimetres, 0 = invalid.

The stand-in model maps each registered frame (looked up by the exact bytes of its pre-processed tensor) to
``A * D * (1 + distortion) + B + noise``: the true inverse depth ``D = 1/Z`` under an unknown scale and shift,
a smooth multiplicative distortion of up to +-5 % (a low-frequency field, as monocular models bend planes) and
1 % per-pixel noise, at the network's working resolution (the predictor resizes it back, as with a real model).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from depth_anything_v2.data.synthetic import SceneConfig, render_scene
from depth_anything_v2.inference.transforms import preprocess
from depth_anything_v2.io.pointcloud import Intrinsics

MODEL_SCALE, MODEL_SHIFT = 2.5, 0.3  # the stand-in's unknown affine map of inverse depth (1/m)
INPUT_SIZE = 126


@dataclass
class Session:
    depth_m: np.ndarray  # truth, float32 (H, W)
    images_rgb: list[np.ndarray]
    stereo_mm: list[np.ndarray]
    intrinsics: Intrinsics  # the renderer's pinhole K


def _holes(depth: np.ndarray, rng: np.random.Generator, target: float = 0.30) -> np.ndarray:
    h, w = depth.shape
    lo = cv2.erode(depth, np.ones((3, 3), np.uint8))
    hi = cv2.dilate(depth, np.ones((3, 3), np.uint8))
    edges = cv2.dilate(((hi - lo) / depth > 0.05).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    holes = edges | (depth < 0.35)
    yy, xx = np.mgrid[0:h, 0:w]
    while holes.mean() < target:
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.08, 0.2) * h, rng.uniform(0.08, 0.2) * w
        holes |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return holes


def make_session(n_frames: int = 8, size: tuple[int, int] = (120, 160), seed: int = 3) -> Session:
    """``n_frames`` frames of one static indoor scene at ``size = (H, W)`` (see the module docstring)."""
    scene = render_scene(seed, *size, config=SceneConfig(indoor_probability=1.0))
    depth = scene.depth_m
    assert np.isfinite(depth).all(), "indoor scenes have no sky"
    rng = np.random.default_rng(seed)
    images, stereo = [], []
    for _ in range(n_frames):
        noisy = scene.image_rgb.astype(np.int16) + rng.integers(-2, 3, scene.image_rgb.shape)
        images.append(np.clip(noisy, 0, 255).astype(np.uint8))
        z = depth + rng.normal(0.0, 1.0, depth.shape) * 0.003 * depth**2
        outliers = rng.random(depth.shape) < 0.01
        z = np.where(outliers, z * rng.uniform(0.5, 1.5, depth.shape), z)
        z = np.where(_holes(depth, rng), 0.0, z)
        stereo.append(np.clip(np.rint(z * 1000.0), 0, 65535).astype(np.uint16))
    k = scene.intrinsics
    return Session(depth, images, stereo, Intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2]))


def _key(x: torch.Tensor) -> str:
    return hashlib.sha1(x.detach().cpu().float().numpy().tobytes()).hexdigest()


class StandInModel(torch.nn.Module):
    """``DepthPredictor``-compatible stand-in: (B, 3, H, W) normalised images -> (B, H, W) "disparity"."""

    is_metric = False
    max_depth = None

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the predictor a device and dtype
        self.outputs: dict[str, np.ndarray] = {}
        self.rng = np.random.default_rng(seed)

    def register(self, image_rgb: np.ndarray, depth_m: np.ndarray, input_size: int = INPUT_SIZE) -> None:
        x = preprocess(image_rgb, input_size)
        h, w = x.shape[-2:]
        inv = cv2.resize((1.0 / depth_m).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
        distortion = 0.05 * np.sin(2.1 * xx + 0.7) * np.cos(1.7 * yy - 0.4)
        noise = self.rng.normal(0.0, 0.01, (h, w))
        out = MODEL_SCALE * inv * (1.0 + distortion) * (1.0 + noise) + MODEL_SHIFT
        self.outputs[_key(x)] = out.astype(np.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.from_numpy(self.outputs[_key(xi[None])]) for xi in x]).to(x.device)


def stand_in_for(session: Session) -> StandInModel:
    model = StandInModel()
    for image in session.images_rgb:
        model.register(image, session.depth_m)
    return model
