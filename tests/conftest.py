"""Shared fixtures: tiny random models (the full architecture at test size), seeded and with a useful output."""

from __future__ import annotations

import pytest
import torch

from depth_anything_v2.dpt import DepthAnythingV2
from model_factory import random_model

torch.set_num_threads(min(2, torch.get_num_threads()))


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
