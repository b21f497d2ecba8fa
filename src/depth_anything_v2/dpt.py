"""``DepthAnythingV2``: the reference API, unchanged.

    from depth_anything_v2.dpt import DepthAnythingV2
    model = DepthAnythingV2(encoder="vits", features=64, out_channels=[48, 96, 192, 384])
    model.load_state_dict(torch.load("depth_anything_v2_vits.pth", map_location="cpu"))
    depth = model.eval().infer_image(cv2.imread("image.jpg"))  # (H, W) float32 disparity

Pass ``max_depth=...`` (20 indoor, 80 outdoor) for the metric models, as in the reference's metric README.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .configs import PATCH_SIZE, get_variant
from .inference.transforms import preprocess, resize_prediction
from .modeling.dinov2 import DinoVisionTransformer
from .modeling.dpt_head import DPTHead


class DepthAnythingV2(nn.Module):
    """DINOv2 encoder (``pretrained``) + DPT head (``depth_head``), named as the official checkpoint keys.

    Args:
        encoder: ``"vits"``, ``"vitb"``, ``"vitl"``, ``"vitg"`` (or ``"tiny"``, a test-sized network).
        features, out_channels: DPT head sizes; must match the encoder's entry in
            :data:`depth_anything_v2.configs.VARIANTS` (as the reference README's ``model_configs``).
        max_depth: ``None`` for the relative model (output: disparity, >= 0, unknown scale and shift);
            a number for a metric model (output: metres in ``(0, max_depth)``, Sigmoid x max_depth).
        use_bn, use_clstoken: accepted for signature compatibility; every released model uses ``False``.

    The model runs on the device and in the dtype of its own parameters: inputs are moved there.
    """

    def __init__(
        self,
        encoder: str = "vitl",
        features: int = 256,
        out_channels: list[int] | tuple[int, ...] = (256, 512, 1024, 1024),
        use_bn: bool = False,
        use_clstoken: bool = False,
        max_depth: float | None = None,
    ) -> None:
        super().__init__()
        if use_bn or use_clstoken:
            raise ValueError("use_bn=True / use_clstoken=True are not used by any released model; expected False")
        variant = get_variant(encoder)
        if features != variant.features or tuple(out_channels) != variant.out_channels:
            raise ValueError(
                f"expected features={variant.features}, out_channels={list(variant.out_channels)} for encoder "
                f"{encoder!r}, got features={features}, out_channels={list(out_channels)}"
            )
        if max_depth is not None and not max_depth > 0:
            raise ValueError(f"expected max_depth > 0 (metres) or None (relative model), got {max_depth}")
        self.encoder = encoder
        self.max_depth = None if max_depth is None else float(max_depth)
        self.intermediate_layer_idx = variant.encoder.layer_idx
        self.pretrained = DinoVisionTransformer(variant.encoder)
        self.depth_head = DPTHead(variant.encoder.embed_dim, features, variant.out_channels, metric=self.is_metric)

    @property
    def is_metric(self) -> bool:
        """True for metric models (metres), False for relative ones (disparity)."""
        return self.max_depth is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised image, H and W multiples of 14 -> ``(B, H, W)`` disparity or metres.

        The output is in the parameter dtype.
        """
        param = self.depth_head.scratch.output_conv1.weight
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected input of shape (B, 3, H, W), got {tuple(x.shape)}")
        x = x.to(device=param.device, dtype=param.dtype)
        patch_h, patch_w = x.shape[-2] // PATCH_SIZE, x.shape[-1] // PATCH_SIZE
        features = self.pretrained.get_intermediate_layers(x, self.intermediate_layer_idx)
        depth = self.depth_head(features, patch_h, patch_w)
        depth = depth * self.max_depth if self.is_metric else F.relu(depth)
        return depth.squeeze(1)

    @torch.no_grad()
    def infer_image(self, raw_image: np.ndarray, input_size: int = 518) -> np.ndarray:
        """BGR uint8 ``(H, W, 3)`` image (as from ``cv2.imread``) -> float32 ``(H, W)`` numpy array.

        Identical to the reference's ``infer_image``, except that it runs on the model's device.
        """
        image = preprocess(raw_image, input_size, channel_order="bgr")
        depth = self.forward(image).float()
        return resize_prediction(depth, raw_image.shape[:2])[0].cpu().numpy()


def build_model(
    encoder: str = "vits", max_depth: float | None = None, *, device=None, init: bool = True
) -> DepthAnythingV2:
    """The one builder: a ``DepthAnythingV2`` for ``encoder`` from the variant table.

    ``init=True`` initialises the encoder as DINOv2 does (random weights); ``init=False`` skips it, for models
    built on the ``meta`` device (``with torch.device("meta"): build_model(..., init=False)``) that receive their
    weights afterwards.
    """
    v = get_variant(encoder)
    model = DepthAnythingV2(v.name, v.features, list(v.out_channels), max_depth=max_depth)
    if init:
        model.pretrained.init_weights()
    return model.to(device) if device is not None else model
