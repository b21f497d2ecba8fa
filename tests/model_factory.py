"""Random test models with a live output, shared by every test package (``tests`` is on pytest's pythonpath)."""

from __future__ import annotations

import torch

from depth_anything_v2 import build_model
from depth_anything_v2.dpt import DepthAnythingV2


def random_model(encoder: str = "tiny", max_depth: float | None = None, seed: int = 0) -> DepthAnythingV2:
    """A randomly initialised model whose output varies over the image (not stuck at the ReLU floor)."""
    torch.manual_seed(seed)
    model = build_model(encoder, max_depth)
    with torch.no_grad():
        # Random heads often end below zero everywhere (a dead ReLU output) with a tiny spread: a positive final
        # bias keeps the relative output alive, and a larger final weight gives it a spread well above fp32
        # rounding of the bias, so relative-error checks measure the network, not the offset.
        last = model.depth_head.scratch.output_conv2[2]
        last.weight.mul_(50.0)
        last.bias.fill_(0.0 if max_depth else 1.0)
    return model.eval()
