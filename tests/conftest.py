"""Shared fixtures: tiny random models (the full architecture at test size), seeded and with a useful output."""

from __future__ import annotations

import pytest
import torch

from depth_anything_v2 import build_model
from depth_anything_v2.dpt import DepthAnythingV2

torch.set_num_threads(min(2, torch.get_num_threads()))


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


@pytest.fixture(scope="session")
def make_model():
    """``make_model(encoder="tiny", max_depth=None, seed=0)``: see :func:`random_model`."""
    return random_model


@pytest.fixture
def tiny_model() -> DepthAnythingV2:
    return random_model("tiny")


@pytest.fixture
def tiny_metric_model() -> DepthAnythingV2:
    return random_model("tiny", max_depth=20.0)
