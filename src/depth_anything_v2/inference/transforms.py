"""The reference pre- and post-processing, exactly (REFERENCE section 3).

``preprocess`` turns an image into the network input the reference ``infer_image`` builds: RGB / 255 in
float64, OpenCV bicubic resize to the working size, ImageNet normalisation, float32 ``(1, 3, h, w)``.
``resize_prediction`` resizes the network output back with bilinear, ``align_corners=True``.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..configs import IMAGENET_MEAN, IMAGENET_STD, PATCH_SIZE

ChannelOrder = Literal["rgb", "bgr"]


def _snap(x: float, min_val: int, multiple: int) -> int:
    # np.round rounds half to even, as the reference's Resize.constrain_to_multiple_of.
    y = int(np.round(x / multiple) * multiple)
    if y < min_val:
        y = int(np.ceil(x / multiple) * multiple)
    return y


def working_size(height: int, width: int, input_size: int = 518, multiple: int = PATCH_SIZE) -> tuple[int, int]:
    """The ``(h, w)`` the network sees for an ``height x width`` image (the reference's "lower_bound" rule).

    Both sides are scaled by the larger of ``input_size / height`` and ``input_size / width`` (so the shorter
    side reaches ``input_size``), then snapped to a multiple of 14 with round-half-to-even, falling back to
    ceil if that drops below ``input_size``. Example: 1080 x 1920 -> (518, 924).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"expected a positive image size, got {height} x {width}")
    if input_size <= 0 or input_size % multiple:
        raise ValueError(f"expected input_size a positive multiple of {multiple}, got {input_size}")
    scale_h, scale_w = input_size / height, input_size / width
    scale = max(scale_h, scale_w)  # same float expressions as the reference, for identical rounding
    return _snap(scale * height, input_size, multiple), _snap(scale * width, input_size, multiple)


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate a ``(H, W, 3)`` uint8 image array; raise ``ValueError`` naming what came instead."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy array (H, W, 3) uint8, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an image of shape (H, W, 3), got {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected dtype uint8 (0-255), got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected a non-empty image, got shape {image.shape}")
    return image


def preprocess(image: np.ndarray, input_size: int = 518, channel_order: ChannelOrder = "rgb") -> torch.Tensor:
    """``(H, W, 3)`` uint8 image -> normalised float32 tensor ``(1, 3, h, w)`` at :func:`working_size`."""
    check_image(image)
    if channel_order == "bgr":
        image = image[..., ::-1]
    elif channel_order != "rgb":
        raise ValueError(f"expected channel_order 'rgb' or 'bgr', got {channel_order!r}")
    h, w = working_size(image.shape[0], image.shape[1], input_size)
    x = np.ascontiguousarray(image) / 255.0  # float64, as the reference
    x = cv2.resize(x, (w, h), interpolation=cv2.INTER_CUBIC)
    x = (x - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)).astype(np.float32))[None]


def resize_prediction(depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(B, h, w)`` predictions to ``size = (H, W)``: bilinear, ``align_corners=True`` (the reference)."""
    if tuple(depth.shape[-2:]) == tuple(size):
        return depth
    return F.interpolate(depth[:, None], size, mode="bilinear", align_corners=True)[:, 0]
