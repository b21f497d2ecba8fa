"""Shared fixtures: tiny random models (the full architecture at test size), seeded and with a useful output, and
one torch thread for tests of tiny models."""

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


@pytest.fixture
def one_torch_thread():
    """Tiny convolutions gain nothing from threads, and on a busy 2-core runner thread contention makes them
    ~50x slower; one thread also matches each torchrun worker (OMP_NUM_THREADS=1) bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
