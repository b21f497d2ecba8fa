"""Depth Anything V2: monocular depth estimation.

    import depth_anything_v2 as da2
    model = da2.load_model("vits")                       # or a .pth / .safetensors / -hf directory
    depth = model.infer_image(cv2.imread("photo.jpg"))   # (H, W) float32 disparity

    predictor = da2.DepthPredictor.from_pretrained("metric-hypersim-vits", device="auto")
    result = predictor.predict("photo.jpg")              # result.depth_m: (H, W) metres; result.unit == "m"

Importing the package is cheap: the heavy parts load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_getattr

__version__ = "0.1.0"

_LAZY = {
    "DepthAnythingV2": "dpt",
    "build_model": "dpt",
    "load_model": "weights.loading",
    "resolve_published": "weights.loading",
    "ModelUnavailableError": "weights.loading",
    "CheckpointError": "weights.checkpoints",
    "DepthPredictor": "inference.predictor",
    "DepthResult": "inference.predictor",
    "Tiling": "inference.tiling",
    "VARIANTS": "configs",
    "PUBLISHED_MODELS": "configs",
}
__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from .configs import PUBLISHED_MODELS, VARIANTS
    from .dpt import DepthAnythingV2, build_model
    from .inference.predictor import DepthPredictor, DepthResult
    from .inference.tiling import Tiling
    from .weights.checkpoints import CheckpointError
    from .weights.loading import ModelUnavailableError, load_model, resolve_published


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
